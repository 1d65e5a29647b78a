"""The parser, as an operator sees it: every protocol path reaches the port rules,
VLAN tags and IPv6 extension headers are walked, later fragments follow
`fragments:`, and anything not understood or broken follows `unparsed:` with its own
reason, never a crash and never a misread header."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp, outcome  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS
from xdpgate.control.layout import Reason, Verdict

PORT_RULES = """
default: allow
fragments: {frag}
unparsed: {unp}
rules:
  - {{name: no-discard-tcp, match: {{proto: tcp, dst_port: 9}}, action: drop}}
  - {{name: no-discard-udp, match: {{proto: udp, dst_port: 9}}, action: drop}}
  - {{name: no-ping, match: {{proto: [icmp, icmpv6]}}, action: drop}}
"""


def policy(frag: str = "allow", unp: str = "allow") -> str:
    return PORT_RULES.format(frag=frag, unp=unp)


def ah(nh: int) -> bytes:
    """IPv6 Authentication Header (RFC 4302): 24 bytes, payload length in 4-byte units - 2."""
    return struct.pack("!BBHII", nh, 24 // 4 - 2, 0, 0x100, 1) + b"\0" * 12


E = fr.eth()
V4, V6 = IP(src=fr.C4, dst=fr.S4), IPv6(src=fr.C6, dst=fr.S6)
RR = IPOption_RR(routers=["192.0.2.9", "192.0.2.10"])

# story -> (frame, expected port-rule outcome: "drop" = rule dropped it)
PATHS = {
    "ipv4_tcp_reaches_the_port_rule": E / V4 / TCP(dport=9),
    "ipv4_with_options_reaches_the_port_rule": E / IP(src=fr.C4, dst=fr.S4, options=[RR]) /
    TCP(dport=9),
    "ipv4_with_40_bytes_of_options_reaches_the_port_rule":
        E / IP(src=fr.C4, dst=fr.S4, options=[IPOption_NOP()] * 40) / UDP(dport=9),
    "ipv4_udp_reaches_the_port_rule": E / V4 / UDP(dport=9) / b"x",
    "ipv4_icmp_reaches_the_proto_rule": E / V4 / ICMP(),
    "ipv6_tcp_reaches_the_port_rule": E / V6 / TCP(dport=9),
    "ipv6_udp_reaches_the_port_rule": E / V6 / UDP(dport=9),
    "ipv6_icmpv6_reaches_the_proto_rule": E / V6 / ICMPv6EchoRequest(),
    "ipv6_hop_by_hop_is_walked": E / V6 / IPv6ExtHdrHopByHop() / TCP(dport=9),
    "ipv6_routing_header_is_walked": E / V6 / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) /
    UDP(dport=9),
    "ipv6_destination_options_are_walked": E / V6 / IPv6ExtHdrDestOpt() / TCP(dport=9),
    "ipv6_ah_is_walked": E / IPv6(src=fr.C6, dst=fr.S6, nh=51) / Raw(ah(6)) / TCP(dport=9),
    "ipv6_chain_of_four_extension_headers_is_walked":
        E / IPv6(src=fr.C6, dst=fr.S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
        IPv6ExtHdrRouting(nh=51) / Raw(ah(17)) / UDP(dport=9),
    "dot1q_tagged_ipv4_reaches_the_port_rule": fr.eth((10,)) / V4 / TCP(dport=9),
    "qinq_8021ad_tagged_ipv6_reaches_the_port_rule": fr.eth((100, 10), qinq=True) / V6 /
    UDP(dport=9),
    "double_8021q_tagged_ipv4_reaches_the_port_rule": fr.eth((100, 10)) / V4 / UDP(dport=9),
    "ipv4_first_fragment_is_handled_by_port_rules": E / IP(src=fr.C4, dst=fr.S4, flags="MF") /
    UDP(dport=9) / (b"f" * 64),
    "ipv6_first_fragment_is_handled_by_port_rules": E / V6 / IPv6ExtHdrFragment(m=1, offset=0) /
    TCP(dport=9),
}


@pytest.mark.parametrize("frame", PATHS.values(), ids=PATHS.keys())
def test_every_protocol_path_reaches_the_rules(dp, frame):
    dp.apply(policy())
    assert outcome(dp, frame) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    ((key, _),) = dp.flows()
    l4 = TCP if TCP in frame else UDP if UDP in frame else None
    assert key.proto == (6 if l4 is TCP else 17 if l4 is UDP else (1 if IP in frame else 58))
    if l4 is not None:
        assert {key.port_a, key.port_b} == {fr.htons(9), fr.htons(frame[l4].sport)}
        # the same path to another port is not the rule's business
        other = frame.copy()
        other[l4].dport = 10
        assert outcome(dp, other) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)


def test_ipv6_chain_longer_than_the_bound_is_not_misread_as_ports(dp):
    """Seven destination-options headers exceed XG_IPV6_EXT_MAX (6): the packet must not
    be read as if the next header were L4, and the port rule cannot be evaded by padding."""
    dp.apply(policy(unp="drop"))
    chain = IPv6(src=fr.C6, dst=fr.S6)
    for _ in range(7):
        chain = chain / IPv6ExtHdrDestOpt()
    rv, reason, verdict = outcome(dp, E / chain / TCP(dport=9))
    assert rv == XDP_DROP, "seven option headers evade the port rule that drops dport 9"
    assert reason in (Reason.RULE, Reason.MALFORMED, Reason.UNPARSED)


LATER = {
    "ipv4_later_fragment": E / IP(src=fr.C4, dst=fr.S4, frag=185) / (b"x" * 32),
    "ipv4_last_fragment": E / IP(src=fr.C4, dst=fr.S4, frag=3, proto=17) / (b"x" * 16),
    "ipv6_later_fragment": E / V6 / IPv6ExtHdrFragment(nh=17, m=1, offset=100) / (b"x" * 32),
    "ipv6_later_fragment_behind_hop_by_hop": E / V6 / IPv6ExtHdrHopByHop() /
    IPv6ExtHdrFragment(nh=6, offset=7) / (b"x" * 8),
    "vlan_tagged_later_fragment": fr.eth((5,)) / IP(src=fr.C4, dst=fr.S4, frag=9) / (b"x" * 8),
}


@pytest.mark.parametrize("action,xdp,verdict", [("allow", XDP_PASS, Verdict.PASS),
                                                ("drop", XDP_DROP, Verdict.DROP)])
@pytest.mark.parametrize("frame", LATER.values(), ids=LATER.keys())
def test_later_fragments_follow_the_fragment_action(dp, frame, action, xdp, verdict):
    dp.apply(policy(frag=action, unp="drop" if action == "allow" else "allow"))
    assert outcome(dp, frame) == (xdp, Reason.FRAGMENT, verdict)
    assert dp.flows() == [], "a later fragment has no ports: it makes no flow"


@pytest.mark.parametrize("action,xdp,verdict", [("allow", XDP_PASS, Verdict.PASS),
                                                ("drop", XDP_DROP, Verdict.DROP)])
@pytest.mark.parametrize("frame", [
    fr.arp(),
    Ether(src=fr.MAC_A, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07" + b"\0" * 40),
    fr.eth((7,)) / Raw(b"\x00" * 46),  # 802.1Q carrying 0x0000
    Ether(src=fr.MAC_A, dst=fr.MAC_B) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / V4 / TCP(),
], ids=["arp", "lldp", "vlan_tag_around_a_non_ip_payload", "third_vlan_tag_is_not_opened"])
def test_non_ip_frames_follow_the_unparsed_action(dp, frame, action, xdp, verdict):
    dp.apply(policy(unp=action, frag="drop" if action == "allow" else "allow"))
    assert outcome(dp, frame) == (xdp, Reason.UNPARSED, verdict)


def _cut(p, n: int) -> bytes:
    return bytes(p)[:n]


MALFORMED = {
    # (BPF_PROG_TEST_RUN, like a NIC, refuses frames shorter than an Ethernet header)
    "ethernet_header_alone_says_ipv4": bytes(Ether(src=fr.MAC_A, dst=fr.MAC_B, type=0x0800)),
    "vlan_tag_cut_short": bytes(fr.eth((5,)))[:16],
    "ipv4_header_cut_short": _cut(E / V4 / TCP(), 14 + 12),
    "ipv4_ihl_below_5": E / IP(src=fr.C4, dst=fr.S4, ihl=4) / (b"\0" * 40),
    "ipv4_ihl_beyond_the_packet": _cut(E / IP(src=fr.C4, dst=fr.S4, ihl=15), 14 + 20) + b"\0" * 8,
    "ipv4_total_length_below_header_length": E / IP(src=fr.C4, dst=fr.S4, len=10) / TCP(),
    "ipv4_ethertype_with_version_6_inside": E / IP(src=fr.C4, dst=fr.S4, version=6) / TCP(),
    "ipv6_header_cut_short": _cut(E / V6 / TCP(), 14 + 24),
    "ipv6_ethertype_with_version_4_inside": Ether(src=fr.MAC_A, dst=fr.MAC_B, type=0x86DD) /
    V4 / TCP() / (b"\0" * 40),
    "tcp_header_cut_short": _cut(E / V4 / TCP(dport=9), 14 + 20 + 12),
    "tcp_data_offset_below_5": E / V4 / TCP(dport=9, dataofs=4),
    "udp_header_cut_short": _cut(E / V6 / UDP(dport=9), 14 + 40 + 6),
    "udp_length_below_8": E / V4 / UDP(dport=9, len=4),
    "icmp_header_cut_short": _cut(E / V4 / ICMP(), 14 + 20 + 2),
    "ipv6_zero_length_hop_by_hop_chain_cut": E / IPv6(src=fr.C6, dst=fr.S6, nh=0, plen=0),
    "ipv6_extension_header_longer_than_the_packet":
        E / IPv6(src=fr.C6, dst=fr.S6, nh=60) / Raw(bytes([6, 4]) + b"\0" * 6),
    "ipv6_ah_longer_than_the_packet": E / IPv6(src=fr.C6, dst=fr.S6, nh=51) / Raw(ah(6)[:16]),
    "ipv6_fragment_header_cut_short": E / IPv6(src=fr.C6, dst=fr.S6, nh=44) / Raw(b"\x06\0\0"),
    "tcp_cut_short_behind_vlan_and_options":
        _cut(fr.eth((3,)) / IP(src=fr.C4, dst=fr.S4, options=[RR]) / TCP(), 18 + 32 + 10),
}


@pytest.mark.parametrize("action,xdp,verdict", [("allow", XDP_PASS, Verdict.PASS),
                                                ("drop", XDP_DROP, Verdict.DROP)])
@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_follow_the_unparsed_action(dp, frame, action, xdp, verdict):
    dp.apply(policy(unp=action))
    assert outcome(dp, frame) == (xdp, Reason.MALFORMED, verdict)
    assert dp.flows() == [], "a malformed frame makes no flow"


def test_ipv4_total_length_beyond_the_frame_is_not_malformed(dp):
    """Ethernet padding and a short capture are everyday: tot_len is not checked against
    the frame end, only against the header length."""
    dp.apply(policy())
    frame = E / IP(src=fr.C4, dst=fr.S4, len=1400) / TCP(dport=9)
    assert outcome(dp, frame) == (XDP_DROP, Reason.RULE, Verdict.DROP)


def test_ethernet_padding_after_a_short_ip_packet_is_ignored(dp):
    dp.apply(policy())
    frame = bytes(E / V4 / UDP(dport=9)) + b"\0" * 18
    assert outcome(dp, frame) == (XDP_DROP, Reason.RULE, Verdict.DROP)
