"""`action: reject`: the filter answers in place (XDP_TX) with a TCP RST or an ICMP
destination unreachable (type 3 code 13 / ICMPv6 type 1 code 1, administratively
prohibited), as bpf/reject.h documents. The frame that comes back from
BPF_PROG_TEST_RUN is parsed with scapy and its checksums recomputed."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.utils import checksum

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp  # noqa: F401  (one Applier per module)
from tests.harness import XDP_DROP, XDP_PASS, XDP_TX
from xdpgate.control.layout import Event, Reason, Verdict

POLICY = """
default: allow
rules:
  - {name: refuse-web, match: {proto: tcp, dst_port: 80}, action: reject}
  - {name: refuse-dns, match: {proto: udp, dst_port: 53}, action: reject}
  - {name: refuse-ping, match: {proto: [icmp, icmpv6]}, action: reject}
  - {name: refuse-gre, match: {proto: 47}, action: reject}
"""


@pytest.fixture
def rj(dp):
    dp.apply(POLICY)
    return dp


def _pseudo(ipl, proto: int, length: int) -> bytes:
    if isinstance(ipl, IPv6):
        import socket

        return (socket.inet_pton(socket.AF_INET6, ipl.src) + socket.inet_pton(
            socket.AF_INET6, ipl.dst) + length.to_bytes(4, "big") + bytes([0, 0, 0, proto]))
    import socket

    return (socket.inet_aton(ipl.src) + socket.inet_aton(ipl.dst) + bytes([0, proto]) +
            length.to_bytes(2, "big"))


def assert_checksums(out: bytes) -> Ether:
    """Every checksum in the reply verifies, both by raw sum and by scapy rebuilding it."""
    pkt = Ether(out)
    ipl = pkt[IPv6] if IPv6 in pkt else pkt[IP]
    raw_ip = bytes(ipl)
    if isinstance(ipl, IP):
        assert checksum(raw_ip[: ipl.ihl * 4]) == 0, "IPv4 header checksum"
        l4raw, proto = raw_ip[ipl.ihl * 4: ipl.len], ipl.proto
    else:
        l4raw, proto = raw_ip[40: 40 + ipl.plen], ipl.nh
    if proto != 1:  # ICMPv4 has no pseudo-header
        assert checksum(_pseudo(ipl, proto, len(l4raw)) + l4raw) == 0, "L4 checksum (pseudo)"
    else:
        assert checksum(l4raw) == 0, "ICMP checksum"
    for layer, field in ((IP, "chksum"), (TCP, "chksum"), (ICMP, "chksum"),
                         (ICMPv6DestUnreach, "cksum")):
        if layer in pkt:
            got = getattr(pkt[layer], field)
            clone = Ether(out)
            delattr(clone[layer], field)
            assert getattr(Ether(bytes(clone))[layer], field) == got, f"{layer.__name__}.{field}"
    return pkt


TCP_CASES = {
    "syn_v4_gets_rst_ack_with_ack_seq_plus_one": (
        fr.tcp(flags="S", seq=1000), 1001, 0),
    "syn_v6_gets_rst_ack": (
        fr.tcp(fr.C6, fr.S6, flags="S", seq=5), 6, 0),
    "data_v4_rst_takes_seq_from_ack_and_acks_payload": (
        fr.tcp(flags="PA", seq=100, ack=777, payload=b"GET / HTTP/1.0\r\n\r\n"), 118, 777),
    "fin_ack_v6_counts_the_fin": (
        fr.tcp(fr.C6, fr.S6, flags="FA", seq=50, ack=9), 51, 9),
    "syn_with_options_v4": (
        fr.tcp(flags="S", seq=1, options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]), 2, 0),
}


@pytest.mark.parametrize("frame,ack,seq", TCP_CASES.values(), ids=TCP_CASES.keys())
def test_rejected_tcp_gets_a_valid_rst_back_to_the_sender(rj, frame, ack, seq):
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    ipl = pkt[IPv6] if IPv6 in pkt else pkt[IP]
    sent = frame[IPv6] if IPv6 in frame else frame[IP]
    assert (pkt.src, pkt.dst) == (fr.MAC_B, fr.MAC_A)
    assert (ipl.src, ipl.dst) == (sent.dst, sent.src)
    t = pkt[TCP]
    assert (t.sport, t.dport) == (80, 40000)
    assert str(t.flags) == "RA"
    assert (t.ack, t.seq) == (ack, seq)
    assert t.dataofs == 5 and not bytes(t.payload)
    hl = 40 if isinstance(ipl, IPv6) else 20
    assert len(out) == 14 + hl + 20, "trimmed to the headers"
    assert rj.events()[Event.REJECT_SENT] == 1
    assert rj.count(Reason.RULE, Verdict.TX) == 1
    assert rj.ap.rule_hits()["refuse-web"][0] == 1


def test_rst_to_a_sender_behind_ipv4_options_has_a_plain_header(rj):
    frame = fr.eth() / IP(src=fr.C4, dst=fr.S4, options=[IPOption_RR(routers=["1.2.3.4"])]) / \
        TCP(sport=40000, dport=80, flags="S", seq=41)
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    assert pkt[IP].ihl == 5 and pkt[IP].len == 40
    assert pkt[TCP].ack == 42 and pkt[IP].dst == fr.C4


@pytest.mark.parametrize("vlans,qinq", [((7,), False), ((100, 7), True)], ids=["dot1q", "qinq"])
def test_vlan_tags_stay_on_the_rejection(rj, vlans, qinq):
    e = fr.eth(vlans, qinq=qinq)
    for frame in (e / IP(src=fr.C4, dst=fr.S4) / TCP(sport=40000, dport=80, flags="S"),
                  e / IPv6(src=fr.C6, dst=fr.S6) / UDP(sport=40000, dport=53) / (b"q" * 20)):
        rv, out = rj.run_full(frame)
        assert rv == XDP_TX
        pkt = assert_checksums(out)
        tags = [pkt[Dot1Q].vlan] if not qinq else [pkt[Dot1AD].vlan, pkt[Dot1Q].vlan]
        assert tags == list(vlans)
        assert (pkt.src, pkt.dst) == (fr.MAC_B, fr.MAC_A)


def test_rejected_udp_v4_gets_icmp_admin_prohibited_quoting_header_plus_8(rj):
    frame = fr.udp(dport=53, payload=b"x" * 40)
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].proto) == (fr.S4, fr.C4, 1)
    assert (pkt[ICMP].type, pkt[ICMP].code) == (3, 13)
    assert bytes(pkt[ICMP].payload) == bytes(frame[IP])[:28]
    assert len(out) == 14 + 20 + 8 + 28
    assert rj.events()[Event.REJECT_SENT] == 1


def test_icmp_quote_keeps_the_ipv4_options_of_the_original(rj):
    frame = fr.eth() / IP(src=fr.C4, dst=fr.S4, options=[IPOption_RR(routers=["1.2.3.4"])]) / \
        UDP(sport=1, dport=53) / (b"abcdefgh" * 3)
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    hl = fr.built(frame)[IP].ihl * 4
    assert bytes(pkt[ICMP].payload) == bytes(frame[IP])[: hl + 8]


def test_rejected_udp_v6_gets_icmpv6_admin_prohibited_quoting_48_bytes(rj):
    frame = fr.udp(fr.C6, fr.S6, dport=53, payload=b"y" * 64)
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].nh) == (fr.S6, fr.C6, 58)
    u = pkt[ICMPv6DestUnreach]
    assert (u.type, u.code) == (1, 1)
    assert bytes(u.payload) == bytes(frame[IPv6])[:48]
    assert pkt[IPv6].plen == 8 + 48


def test_short_udp_quote_is_what_there_is(rj):
    frame = fr.udp(dport=53, payload=b"")  # IP header + 8-byte UDP header, nothing more
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    assert bytes(pkt[ICMP].payload) == bytes(frame[IP])


@pytest.mark.parametrize("src,dst", [(fr.C4, fr.S4), (fr.C6, fr.S6)], ids=["v4", "v6"])
def test_rejected_ping_is_answered_unreachable(rj, src, dst):
    rv, out = rj.run_full(fr.icmp(src, dst))
    assert rv == XDP_TX
    pkt = assert_checksums(out)
    assert (ICMPv6DestUnreach in pkt) if ":" in src else (pkt[ICMP].type == 3)


def test_other_protocol_v4_gets_icmp_unreachable(rj):
    frame = fr.eth() / IP(src=fr.C4, dst=fr.S4, proto=47) / (b"\x00\x00\x88\xbe" + b"z" * 30)
    rj.apply(POLICY + "tunnels: {gre: false}\n")
    rv, out = rj.run_full(frame)
    assert rv == XDP_TX
    assert assert_checksums(out)[ICMP].code == 13


NOT_ANSWERED = {
    "rst_is_never_answered_with_rst": fr.tcp(flags="R", seq=5),
    "rst_v6_is_never_answered": fr.tcp(fr.C6, fr.S6, flags="RA"),
    "icmp_error_is_never_answered": fr.eth() / IP(src=fr.C4, dst=fr.S4) / ICMP(type=3, code=1) /
    bytes(IP(src=fr.S4, dst=fr.C4) / UDP()),
    "icmpv6_error_is_never_answered": fr.eth() / IPv6(src=fr.C6, dst=fr.S6) /
    ICMPv6DestUnreach() / bytes(IPv6() / UDP()),
    "multicast_destination_is_not_answered": fr.udp(dst="239.1.2.3", dport=53),
    "broadcast_destination_is_not_answered": fr.udp(dst="255.255.255.255", dport=53),
    "ipv6_multicast_is_not_answered": fr.udp(fr.C6, "ff02::fb", dport=53),
}


@pytest.mark.parametrize("frame", NOT_ANSWERED.values(), ids=NOT_ANSWERED.keys())
def test_what_must_not_be_answered_is_dropped_and_counted_as_fallback(rj, frame):
    rv, out = rj.run_full(frame)
    assert rv == XDP_DROP
    assert out == bytes(frame), "the frame is left untouched"
    assert rj.count(Reason.REJECT_FALLBACK, Verdict.DROP) == 1
    assert rj.events()[Event.REJECT_SENT] == 0


def test_reject_inside_a_tunnel_falls_back_to_drop(rj):
    frame = fr.gtpu(fr.inner_tcp(dport=80))
    assert rj.run(frame) == XDP_DROP
    assert rj.count(Reason.REJECT_FALLBACK, Verdict.DROP) == 1


def test_reject_of_a_first_fragment_falls_back_to_drop(rj):
    frame = fr.eth() / IP(src=fr.C4, dst=fr.S4, flags="MF") / UDP(sport=1, dport=53) / (b"f" * 32)
    assert rj.run(frame) == XDP_DROP
    assert rj.count(Reason.REJECT_FALLBACK, Verdict.DROP) == 1


def test_traffic_the_policy_allows_is_not_rewritten(rj):
    frame = fr.tcp(dport=443)
    rv, out = rj.run_full(frame)
    assert rv == XDP_PASS and out == bytes(frame)
    assert rj.events()[Event.REJECT_SENT] == 0


def test_every_packet_of_a_rejected_flow_is_answered(rj):
    for i in range(3):
        rv, out = rj.run_full(fr.tcp(flags="S", seq=i * 10))
        assert rv == XDP_TX and Ether(out)[TCP].ack == i * 10 + 1
    assert rj.events()[Event.REJECT_SENT] == 3
