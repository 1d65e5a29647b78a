"""Carrier deployments (issue 6): the filter reads through GTP-U, GRE, VXLAN and
IP-in-IP, keys flows by the inner 5-tuple plus tunnel type and id, enforces rules
on the inner flow, selects by the outer layer, and counts what it cannot read."""

from __future__ import annotations

import itertools
import struct

import pytest
import yaml
from scapy.layers.inet import IP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Raw

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp, outcome  # noqa: F401
from tests.harness import DP, XDP_DROP, XDP_PASS
from xdpgate.control import bpfsys, layout, loader
from xdpgate.control.layout import Reason, Sizes, Tunnel, Verdict
from xdpgate.control.maps import addr16

INNER_PORT_RULE = """
default: allow
unparsed: {unp}
sets: {{gw: [192.0.2.1/32, 2001:db8:ff::1/128]}}
rules:
  - {{name: no-port-9-inside, match: {{dst_port: 9}}, action: drop}}
"""
PDU = fr.pdu_session_container()
UDP_PORT_EXT = bytes([1, 0x08, 0x68, 0])  # GTP-U "UDP port" extension (0x40), one unit

# encapsulation -> (builder(inner, outer), tunnel type, tunnel id)
ENCAPS = {
    "gtpu": (lambda i, o: fr.gtpu(i, teid=0x1001, outer=o), Tunnel.GTPU, 0x1001),
    "gtpu_seq": (lambda i, o: fr.gtpu(i, teid=7, seq=99, outer=o), Tunnel.GTPU, 7),
    "gtpu_npdu": (lambda i, o: fr.gtpu(i, teid=8, npdu=5, outer=o), Tunnel.GTPU, 8),
    "gtpu_pdu_session": (lambda i, o: fr.gtpu(i, teid=9, exts=[(0x85, PDU)], outer=o),
                         Tunnel.GTPU, 9),
    "gtpu_two_ext_headers": (lambda i, o: fr.gtpu(i, teid=10, seq=1, outer=o,
                                                  exts=[(0x40, UDP_PORT_EXT), (0x85, PDU)]),
                             Tunnel.GTPU, 10),
    "gre": (lambda i, o: fr.gre(i, outer=o), Tunnel.GRE, 0),
    "gre_key": (lambda i, o: fr.gre(i, key=77, outer=o), Tunnel.GRE, 77),
    "gre_key_seq": (lambda i, o: fr.gre(i, key=78, seq=5, outer=o), Tunnel.GRE, 78),
    "gre_csum_key_seq": (lambda i, o: fr.gre(i, key=79, seq=6, csum=True, outer=o),
                         Tunnel.GRE, 79),
    "gre_csum_only": (lambda i, o: fr.gre(i, csum=True, outer=o), Tunnel.GRE, 0),
    "gre_teb": (lambda i, o: fr.gre(Ether(src=fr.MAC_A, dst=fr.MAC_B) / i, key=80, outer=o),
                Tunnel.GRE, 80),
    "vxlan": (lambda i, o: fr.vxlan(i, vni=0xABCDE, outer=o), Tunnel.VXLAN, 0xABCDE),
    "ipip": (lambda i, o: fr.ipip(i, outer=o), Tunnel.IPIP, 0),
}
OUTERS = {"outer4": (fr.T4A, fr.T4B), "outer6": (fr.T6A, fr.T6B)}
INNERS = {"inner4": (fr.C4, fr.S4), "inner6": (fr.C6, fr.S6)}
L4 = {"udp": fr.inner_udp, "tcp": fr.inner_tcp}
GRID = list(itertools.product(ENCAPS, OUTERS, INNERS, L4))


def dims(d: DP, t: Tunnel) -> int:
    cells = d.maps["dims"].counters()
    i = layout.D_TUN + t
    return cells[i][0] if i < len(cells) else 0


@pytest.mark.parametrize("enc,outer,inner,l4", GRID, ids=["-".join(g) for g in GRID])
def test_rules_see_the_inner_flow_of_every_encapsulation(dp, enc, outer, inner, l4):
    build, ttype, tid = ENCAPS[enc]
    src, dst = INNERS[inner]
    dp.apply(INNER_PORT_RULE.format(unp="drop"))
    blocked = build(L4[l4](src, dst, dport=9), OUTERS[outer])
    assert outcome(dp, blocked) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    fine = build(L4[l4](src, dst, dport=10), OUTERS[outer])
    assert outcome(dp, fine) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    flows = dp.flows()
    assert len(flows) == 2
    for key, fl in flows:
        assert (key.tun_type, key.tun_id, key.proto) == (ttype, tid, 17 if l4 == "udp" else 6)
        assert {bytes(key.addr_a), bytes(key.addr_b)} == {addr16(src), addr16(dst)}
        assert {bytes(fl.outer_a), bytes(fl.outer_b)} == {addr16(a) for a in OUTERS[outer]}
    assert dims(dp, ttype) == 2


def test_the_reply_inside_the_tunnel_joins_the_same_flow(dp):
    dp.run(fr.gtpu(fr.inner_udp(dport=5060), teid=5))
    back = fr.inner_udp(fr.S4, fr.C4, sport=5060, dport=40000)
    dp.run(fr.gtpu(back, teid=5, outer=(fr.T4B, fr.T4A)))
    ((_, fl),) = dp.flows()
    assert (fl.pkts[0], fl.pkts[1]) == (1, 1)


# The entry stage reads the common inner packet itself; other shapes go to the level
# parser. Both must see the same flow and apply the same rule.
GENERAL_SHAPES = {
    "ipv4_options": lambda dport: IP(src=fr.C4, dst=fr.S4, options=[IPOption_NOP()] * 4)
    / UDP(sport=40000, dport=dport) / b"inner",
    "ipv6_destination_options": lambda dport: IPv6(src=fr.C6, dst=fr.S6)
    / IPv6ExtHdrDestOpt() / UDP(sport=40000, dport=dport) / b"inner",
}
COMMON_SHAPES = {
    "ipv4_options": lambda dport: fr.inner_udp(dport=dport),
    "ipv6_destination_options": lambda dport: fr.inner_udp(fr.C6, fr.S6, dport=dport),
}


@pytest.mark.parametrize("enc", ["gtpu", "vxlan", "gre"])
@pytest.mark.parametrize("shape", list(GENERAL_SHAPES))
def test_the_common_inner_shape_and_the_general_parser_see_one_flow(dp, enc, shape):
    build, ttype, tid = ENCAPS[enc]
    dp.apply(INNER_PORT_RULE.format(unp="drop"))
    for dport, want in ((9, (XDP_DROP, Reason.RULE, Verdict.DROP)),
                        (10, (XDP_PASS, Reason.DEFAULT, Verdict.PASS))):
        for make in (COMMON_SHAPES[shape], GENERAL_SHAPES[shape]):
            assert outcome(dp, build(make(dport), OUTERS["outer4"])) == want
    got = sorted((k.tun_type, k.tun_id, bytes(k.addr_b) == addr16(
        fr.S6 if "ipv6" in shape else fr.S4), v.pkts[0]) for k, v in dp.flows())
    assert got == [(ttype, tid, True, 2), (ttype, tid, True, 2)]
    assert dims(dp, ttype) == 4


def test_two_tunnels_with_the_same_inner_addresses_are_two_flows(dp):
    inner = fr.inner_udp("10.45.0.2", "10.45.0.1", dport=53)  # CGNAT-style private range
    for f in (fr.gtpu(inner, teid=1), fr.gtpu(inner, teid=2), fr.vxlan(inner, vni=1),
              fr.gre(inner, key=1), fr.gtpu(inner, teid=1)):
        dp.run(f)
    got = sorted((k.tun_type, k.tun_id, v.pkts[0]) for k, v in dp.flows())
    assert got == [(Tunnel.GTPU, 1, 2), (Tunnel.GTPU, 2, 1), (Tunnel.GRE, 1, 1),
                   (Tunnel.VXLAN, 1, 1)]


def rule(match: dict) -> str:
    return yaml.safe_dump({"default": "allow", "sets": {"gw": ["192.0.2.1/32"]},
                           "rules": [{"name": "sel", "match": match, "action": "drop"}]})


INNER = fr.inner_udp(dport=53)
PLAIN = fr.eth() / INNER
# story -> (match, frames dropped, frames passed)
OUTER_MATCHES = {
    "tunnel_gtpu_selects_gtpu_only": ({"tunnel": "gtpu"}, [fr.gtpu(INNER)],
                                      [fr.vxlan(INNER), fr.gre(INNER), PLAIN]),
    "tunnel_list": ({"tunnel": ["gre", "ipip"]}, [fr.gre(INNER), fr.ipip(INNER)],
                    [fr.gtpu(INNER), fr.vxlan(INNER), PLAIN]),
    "tunnel_none_selects_plain_traffic": ({"tunnel": "none"}, [PLAIN],
                                          [fr.gtpu(INNER), fr.ipip(INNER)]),
    "tunnel_id_selects_a_teid": ({"tunnel_id": 0x1001}, [fr.gtpu(INNER, teid=0x1001)],
                                 [fr.gtpu(INNER, teid=0x1002), PLAIN]),
    "tunnel_id_with_type_selects_a_vni": ({"tunnel": "vxlan", "tunnel_id": [42, 43]},
                                          [fr.vxlan(INNER, vni=43)],
                                          [fr.gre(INNER, key=43), fr.vxlan(INNER, vni=44)]),
    "outer_src_cidr": ({"outer_src": "192.0.2.0/31"}, [fr.gtpu(INNER, outer=(fr.T4A, fr.T4B))],
                       [fr.gtpu(INNER, outer=(fr.T4B, fr.T4A)), PLAIN]),
    "outer_dst_set": ({"outer_dst": "gw"}, [fr.vxlan(INNER, outer=(fr.T4B, fr.T4A))],
                      [fr.vxlan(INNER, outer=(fr.T4A, fr.T4B))]),
    "inner_dst_with_outer_src": ({"dst": fr.S4, "outer_src": "192.0.2.1"},
                                 [fr.gre(INNER, outer=(fr.T4A, fr.T4B))],
                                 [fr.gre(fr.inner_udp(dst="10.0.0.3"), outer=(fr.T4A, fr.T4B)),
                                  fr.gre(INNER, outer=(fr.T4B, fr.T4A))]),
}


@pytest.mark.parametrize("match,hits,misses", OUTER_MATCHES.values(), ids=OUTER_MATCHES.keys())
def test_outer_layer_matches(dp, match, hits, misses):
    dp.apply(rule(match))
    for f in hits:
        assert outcome(dp, f) == (XDP_DROP, Reason.RULE, Verdict.DROP), f.summary()
    for f in misses:
        # the verdict is cached per inner flow, and the outer addresses are not in the
        # flow key: judge each miss as a new flow
        dp.clear("flows")
        assert outcome(dp, f) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS), f.summary()


@pytest.mark.parametrize("kind,frame,port", [
    ("vxlan", fr.vxlan(fr.inner_udp(dport=9)), fr.VXLAN_PORT),
    ("gtpu", fr.gtpu(fr.inner_udp(dport=9)), fr.GTPU_PORT),
    ("gre", fr.gre(fr.inner_udp(dport=9), key=3), None),
    ("ipip", fr.ipip(fr.inner_udp(dport=9)), None),
])
def test_a_tunnel_type_switched_off_is_an_outer_flow(dp, kind, frame, port):
    dp.apply(INNER_PORT_RULE.format(unp="drop") + f"tunnels: {{{kind}: false}}\n")
    assert outcome(dp, frame) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    ((key, _),) = dp.flows()
    assert key.tun_type == Tunnel.NONE
    assert {bytes(key.addr_a), bytes(key.addr_b)} == {addr16(fr.T4A), addr16(fr.T4B)}
    if port:
        assert fr.htons(port) in (key.port_a, key.port_b)


NOT_OPENED = {
    "gtp_echo_request_is_signalling_not_user_data": fr.eth() / IP(src=fr.T4A, dst=fr.T4B) /
    UDP(sport=2152, dport=2152) / Raw(fr.gtpu_hdr(0, 4, seq=1, msg_type=1) + b"\0" * 4),
    "gre_version_1_pptp_is_a_plain_flow": fr.eth() / IP(src=fr.T4A, dst=fr.T4B) /
    GRE(version=1, proto=0x880B, key_present=1, key=5) / b"ppp",
    "gre_with_unknown_payload_is_a_plain_flow": fr.gre(Raw(b"\0" * 30), proto=0x88BE),
    "fragmented_outer_packet_is_not_opened": fr.eth() / IP(src=fr.T4A, dst=fr.T4B, flags="MF") /
    UDP(sport=2152, dport=2152) / Raw(fr.gtpu_hdr(1, 28) + bytes(fr.inner_udp(dport=9))),
}


@pytest.mark.parametrize("frame", NOT_OPENED.values(), ids=NOT_OPENED.keys())
def test_what_is_not_a_tunnel_we_open_stays_an_outer_flow(dp, frame):
    dp.apply(INNER_PORT_RULE.format(unp="drop"))
    assert outcome(dp, frame) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    ((key, _),) = dp.flows()
    assert key.tun_type == Tunnel.NONE


def _gtp(hdr: bytes, payload: bytes = b"") -> bytes:
    return bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B) / UDP(sport=2152, dport=2152) /
                 Raw(hdr + payload))


IN = bytes(fr.inner_udp(dport=9))
MALFORMED = {
    "gtpu_header_cut_short": _gtp(fr.gtpu_hdr(1, len(IN))[:5]),
    "gtpu_version_2": _gtp(fr.gtpu_hdr(1, len(IN), flags=0x48), IN),
    "gtpu_optional_fields_cut_short": _gtp(fr.gtpu_hdr(1, 0, seq=1)[:10]),
    "gtpu_extension_of_length_zero": _gtp(fr.gtpu_hdr(1, len(IN), exts=[(0x85, PDU)])[:12] +
                                          b"\x00\x00\x00\x00", IN),
    "gtpu_extension_longer_than_the_packet": _gtp(struct.pack("!BBHI", 0x34, 0xFF, 7, 1) +
                                                  b"\0\0\0\x85" + b"\x09\0\0"),
    "gtpu_extension_chain_beyond_the_bound": _gtp(fr.gtpu_hdr(1, len(IN), exts=[(0x85, PDU)] * 5),
                                                  IN),
    "gtpu_payload_is_not_ip": _gtp(fr.gtpu_hdr(1, 20), b"\x00" * 20),
    "gtpu_inner_ipv4_ihl_below_5": _gtp(fr.gtpu_hdr(1, len(IN)), b"\x44" + IN[1:]),
    "gtpu_inner_udp_cut_short": _gtp(fr.gtpu_hdr(1, 24), IN[:24]),
    "gre_key_cut_short": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B, proto=47) /
                               Raw(b"\x20\x00\x08\x00\x00\x01")),
    "gre_checksum_cut_short": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B, proto=47) /
                                    Raw(b"\x80\x00\x08\x00\x00")),
    "gre_header_cut_short": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B, proto=47) / Raw(b"\0")),
    "gre_teb_inner_ethernet_cut_short": bytes(fr.gre(Raw(b"\0" * 8), proto=0x6558)),
    "vxlan_header_cut_short": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B) /
                                    UDP(sport=1, dport=4789) / b"\x08\0\0"),
    "vxlan_without_the_vni_flag": bytes(fr.vxlan(fr.inner_udp(), flags=0x00)),
    "vxlan_inner_ethernet_cut_short": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B) /
                                            UDP(sport=1, dport=4789) / Raw(b"\x08" + b"\0" * 12)),
    "ipip_inner_header_cut_short": bytes(fr.ipip(fr.inner_udp()))[: 14 + 20 + 12],
    "ipv6_in_ipv4_inner_version_wrong": bytes(fr.eth() / IP(src=fr.T4A, dst=fr.T4B, proto=41) /
                                              Raw(IN + b"\0" * 40)),
}


@pytest.mark.parametrize("unp,xdp,verdict", [("allow", XDP_PASS, Verdict.PASS),
                                             ("drop", XDP_DROP, Verdict.DROP)])
@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_tunnel_headers_follow_the_unparsed_action(dp, frame, unp, xdp, verdict):
    dp.apply(INNER_PORT_RULE.format(unp=unp))
    assert outcome(dp, frame) == (xdp, Reason.TUNNEL_MALFORMED, verdict)
    assert dp.flows() == []


@pytest.mark.parametrize("frame", [
    fr.eth() / IP(src=fr.T4A, dst=fr.T4B) / UDP(sport=1, dport=4789) /
    Raw(b"\x08\0\0\0\0\0\x2a\0" + bytes(fr.arp())),
    fr.gre(fr.arp(), key=5),
], ids=["arp_in_vxlan", "arp_in_gre_bridging"])
def test_non_ip_inside_an_l2_tunnel_is_unparsed_not_a_malformed_tunnel(dp, frame):
    assert outcome(dp, frame) == (XDP_PASS, Reason.UNPARSED, Verdict.PASS)
    dp.apply("default: allow\nunparsed: drop")
    assert outcome(dp, frame) == (XDP_DROP, Reason.UNPARSED, Verdict.DROP)


# ---- nesting: a second filter loaded to open two levels -------------------------------

@pytest.fixture(scope="module")
def deep(loaded_filter):
    flt = loader.load(Sizes(tunnel_depth=2), pin=False)
    d = DP(flt)
    yield d
    flt.close()


@pytest.fixture
def dp2(deep):
    deep.apply(INNER_PORT_RULE.format(unp="drop"))
    deep.reset()
    deep.config(sample_pkts=0, fail_closed=0)
    return deep


# The verifier of Debian 12's own kernel (6.1) gives up after 1,000,000 processed
# instructions. Each stage, at the deepest load-time setting, must stay far below that here,
# so the program keeps loading there (measured on 6.1.0-50 in a VM, vagrant/kernel-6.1-check.sh
# with XG_K61_TESTS="tests/datapath/test_tunnels.py -k verifiers_limit -s": 90k-136k at two
# levels, against 55k-121k on 6.18, 2026-12-02).
VERIFIER_BUDGET = 250_000
BPF_PROG_TYPE_XDP = 6


@pytest.mark.parametrize("stage", ["xdpgate_main", "xdpgate_level", "xdpgate_decide"])
def test_each_stage_stays_far_inside_the_verifiers_limit_at_two_levels(deep, stage):
    fd = deep.f.bpf.load_func(stage.encode(), BPF_PROG_TYPE_XDP).fd
    n = bpfsys.prog_info(fd).verified_insns
    print(f"{stage}: {n} instructions verified")  # shown with -s (the 6.1 check's figures)
    assert 0 < n < VERIFIER_BUDGET, f"{stage}: the verifier processed {n} instructions"


NESTED = {
    "vxlan_inside_gtpu": (lambda i: fr.gtpu(bytes(fr.vxlan(i, vni=7))[14:], teid=3),
                          Tunnel.GTPU, 3, Tunnel.VXLAN, 7),
    "gre_inside_ipip": (lambda i: fr.ipip(fr.gre(i, key=9)[IP]), Tunnel.IPIP, 0, Tunnel.GRE, 9),
    "gtpu_inside_gre_over_ipv6": (lambda i: fr.gre(fr.gtpu(i, teid=11)[IP], key=4,
                                                   outer=(fr.T6A, fr.T6B)),
                                  Tunnel.GRE, 4, Tunnel.GTPU, 11),
}


@pytest.mark.parametrize("build,t1,id1,t2,id2", NESTED.values(), ids=NESTED.keys())
def test_two_levels_open_at_depth_2_and_one_at_depth_1(dp, dp2, build, t1, id1, t2, id2):
    frame = build(fr.inner_udp(dport=9))
    assert outcome(dp2, frame) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    ((key, fl),) = dp2.flows()
    assert (key.tun_type, key.tun_id) == (t2, id2), "the innermost tunnel keys the flow"
    assert {bytes(key.addr_a), bytes(key.addr_b)} == {addr16(fr.C4), addr16(fr.S4)}
    outer = {bytes(fl.outer_a), bytes(fl.outer_b)}
    assert outer in ({addr16(fr.T4A), addr16(fr.T4B)}, {addr16(fr.T6A), addr16(fr.T6B)})
    dp.apply(INNER_PORT_RULE.format(unp="drop"))
    assert outcome(dp, frame) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    ((key1, _),) = dp.flows()
    assert (key1.tun_type, key1.tun_id) == (t1, id1), "depth 1 stops at the first tunnel"


def test_a_third_level_is_not_opened_at_depth_2(dp2):
    inner = fr.inner_udp(dport=9)
    frame = fr.ipip(fr.ipip(fr.ipip(inner)[IP])[IP])
    assert outcome(dp2, frame) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    ((key, _),) = dp2.flows()
    assert key.proto == 4 and key.tun_type == Tunnel.IPIP


def test_ipv6_in_ipv6_opens(dp):
    dp.apply(INNER_PORT_RULE.format(unp="drop"))
    frame = fr.eth() / IPv6(src=fr.T6A, dst=fr.T6B, nh=41) / fr.inner_udp(fr.C6, fr.S6, dport=9)
    assert outcome(dp, frame) == (XDP_DROP, Reason.RULE, Verdict.DROP)
