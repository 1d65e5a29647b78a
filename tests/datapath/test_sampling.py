"""Sampling: the first packets of an unlabelled flow go to the controller through the ring
buffer, numbered within the flow. TCP segments without payload (the handshake, bare ACKs)
use their place in the budget but are not sent, except as the budget's last packet; what is
sent is exactly what the offline classifier feeds (``packet.sampled``)."""

from __future__ import annotations

import ctypes as ct

import pytest
from scapy.layers.inet import IP, TCP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp  # noqa: F401
from tests.harness import XDP_PASS
from xdpgate.control import layout
from xdpgate.control.classify.packet import parse_ip, sampled
from xdpgate.control.layout import Event

T = fr.tcp
HDR = ct.sizeof(layout.SampleHdr)


class Samples:
    """What the data path put into the ring buffer, read without waiting."""

    def __init__(self, bpf) -> None:
        self.got: list[tuple[layout.SampleHdr, bytes]] = []
        self.bpf = bpf
        bpf[b"samples"].open_ring_buffer(self._cb)

    def _cb(self, ctx, data, size) -> int:
        buf = ct.string_at(data, size)
        hdr = layout.SampleHdr.from_buffer_copy(buf)
        self.got.append((hdr, buf[HDR:HDR + hdr.cap_len]))
        return 0

    def take(self) -> list[tuple[layout.SampleHdr, bytes]]:
        self.bpf.ring_buffer_consume()
        out, self.got = self.got, []
        return out


@pytest.fixture(scope="module")
def ring(module_dp):
    return Samples(module_dp.f.bpf)


@pytest.fixture
def sampling(dp, ring):
    ring.take()  # whatever an earlier test left
    dp.config(sample_pkts=8, fail_closed=0)
    yield dp
    dp.config(sample_pkts=0, fail_closed=0)


def handshake_then(payload: bytes, c=fr.C4, s=fr.S4):
    return [T(c, s, 40000, 443, flags="S", options=[("MSS", 1460), ("SAckOK", b"")]),
            T(s, c, 443, 40000, flags="SA"),
            T(c, s, 40000, 443, flags="A"),
            T(c, s, 40000, 443, flags="PA", payload=payload)]


@pytest.mark.parametrize("c,s", [(fr.C4, fr.S4), (fr.C6, fr.S6)], ids=["v4", "v6"])
def test_a_tcp_handshake_uses_the_budget_but_only_its_first_payload_is_sent(sampling, ring,
                                                                            c, s):
    for f in handshake_then(b"\x16\x03\x01hello", c, s):
        assert sampling.run(f) == XDP_PASS
    got = ring.take()
    assert [(h.seq, h.dir) for h, _ in got] == [(3, 0)]
    assert got[0][1].endswith(b"\x16\x03\x01hello")
    ev = sampling.events()
    assert (ev[Event.SAMPLE_BARE], ev[Event.SAMPLE_SENT]) == (3, 1)
    (_, flow), = sampling.flows()
    assert flow.nsampled == 4


def test_a_reply_with_payload_is_sent_with_its_direction(sampling, ring):
    sampling.run(T(fr.C4, fr.S4, 40000, 25, flags="S"))
    sampling.run(T(fr.S4, fr.C4, 25, 40000, flags="SA"))
    sampling.run(T(fr.C4, fr.S4, 40000, 25, flags="A"))
    sampling.run(T(fr.S4, fr.C4, 25, 40000, flags="PA", payload=b"220 mail ESMTP\r\n"))
    assert [(h.seq, h.dir) for h, _ in ring.take()] == [(3, 1)]


def test_the_budgets_last_packet_is_sent_even_without_payload(sampling, ring):
    sampling.config(sample_pkts=4, fail_closed=0)
    for f in handshake_then(b"")[:3] + [T(flags="A", dport=443)] + [
            T(flags="PA", dport=443, payload=b"late")]:
        sampling.run(f)
    got = ring.take()
    assert [h.seq for h, _ in got] == [3], "only the budget's last (bare) packet is sent"
    assert sampling.events()[Event.SAMPLE_BARE] == 3


def test_a_bare_ack_padded_to_the_ethernet_minimum_is_still_bare(sampling, ring):
    frame = bytes(T(flags="A", dport=443))
    assert len(frame) == 54
    sampling.run(frame + b"\0" * 6)  # the 60-byte minimum frame: padding is not payload
    assert ring.take() == []
    assert sampling.events()[Event.SAMPLE_BARE] == 1


def test_udp_without_payload_and_tcp_behind_options_or_extension_headers_are_sent(sampling,
                                                                                  ring):
    frames = [
        fr.udp(payload=b""),
        Ether(src=fr.MAC_A, dst=fr.MAC_B) / IP(src=fr.C4, dst=fr.S4,
                                               options=[IPOption_NOP()] * 4)
        / TCP(sport=40001, dport=80, flags="PA") / b"GET / HTTP/1.1\r\n",
        Ether(src=fr.MAC_A, dst=fr.MAC_B) / IPv6(src=fr.C6, dst=fr.S6) / IPv6ExtHdrDestOpt()
        / TCP(sport=40002, dport=80, flags="PA") / b"GET / HTTP/1.1\r\n",
        Ether(src=fr.MAC_A, dst=fr.MAC_B) / IPv6(src=fr.C6, dst=fr.S6) / IPv6ExtHdrDestOpt()
        / TCP(sport=40003, dport=80, flags="A"),
    ]
    for f in frames:
        sampling.run(f)
    got = ring.take()
    assert len(got) == 3, "the bare ACK behind an extension header is the one not sent"
    assert sampling.events()[Event.SAMPLE_BARE] == 1


@pytest.mark.parametrize("wrap", ["gtpu", "vxlan", "gre_with_inner_options"])
def test_inside_a_tunnel_the_inner_segment_decides(sampling, ring, wrap):
    def inner(flags: str, payload: bytes = b"") -> bytes:
        opts = [IPOption_NOP()] * 4 if wrap == "gre_with_inner_options" else []
        p = IP(src=fr.C4, dst=fr.S4, options=opts) / TCP(sport=40000, dport=443, flags=flags)
        return bytes(p / payload if payload else p)

    def wrapped(b: bytes):
        if wrap == "gtpu":
            return fr.gtpu(b)
        if wrap == "vxlan":
            return fr.vxlan(IP(b))
        return fr.gre(IP(b), key=7)

    sampling.run(wrapped(inner("S")))
    sampling.run(wrapped(inner("PA", b"\x16\x03\x01hello")))
    assert [h.seq for h, _ in ring.take()] == [1]
    assert sampling.events()[Event.SAMPLE_BARE] == 1


@pytest.mark.parametrize("seq,frame,sent", [
    (0, T(flags="S"), False),
    (2, T(flags="A"), False),
    (7, T(flags="A"), True),
    (0, T(flags="PA", payload=b"x"), True),
    (0, fr.udp(payload=b""), True),
    (0, fr.icmp(), True),
])
def test_the_offline_rule_is_the_data_paths(seq, frame, sent):
    p = parse_ip(bytes(frame)[14:])
    assert sampled(p, seq, 8) is sent


BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + b"\x11" * 20 + b"-XG0001-" + b"7" * 12


def test_a_flow_the_table_evicted_and_made_anew_gets_its_label_again(sampling, ring):
    """The label lives in the flow entry: when the LRU table evicts an active flow, its next
    packet makes a new, unlabelled entry. The classifier remembers the flow as decided and
    the sampler sends the label again, so `category: p2p -> drop` still holds for it."""
    from xdpgate.control.classify.engine import Classifier
    from xdpgate.control.classify.taxonomy import app_id
    from xdpgate.control.sampler import Sampler

    smp = Sampler(None, sampling.maps, classifier=Classifier())

    def feed_the_sampler():
        for hdr, data in ring.take():
            smp.handle(hdr, data)
        smp.sink.flush()

    def app_of_the_flow():
        (_, flow), = sampling.flows()
        return flow.app

    hs = T(fr.C4, fr.S4, 40000, 6881, flags="PA", payload=BT_HANDSHAKE)
    sampling.run(hs)
    feed_the_sampler()
    sampling.run(T(fr.C4, fr.S4, 40000, 6881, flags="A"))
    assert app_of_the_flow() == app_id("bittorrent")
    assert smp.sink.flows_by_app["bittorrent"] == 1
    for key, _ in sampling.flows():  # the table evicts it
        assert sampling.maps.flowtable.delete(key)
    sampling.run(T(fr.C4, fr.S4, 40000, 6881, flags="PA", payload=b"\x00\x00\x00\x01\x02"))
    assert app_of_the_flow() == 0
    feed_the_sampler()
    sampling.run(T(fr.C4, fr.S4, 40000, 6881, flags="A"))
    assert app_of_the_flow() == app_id("bittorrent")
    assert smp.sink.flows_by_app["bittorrent"] == 1, "a label sent again is no new flow"
