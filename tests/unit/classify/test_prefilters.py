"""Prefilters and dispatch: a module is called only for payloads starting with one of its
declared first bytes, and for any other payload the engine gives the answer the module itself
would have given.  The declarations are checked against each module's match(): a wrong one
fails here, not silently in the field."""

from __future__ import annotations

import importlib
import random

import pytest

from xdpgate.control.classify import dispatch
from xdpgate.control.classify.base import GIVE_UP, Flow, Prefilter, Sample, Spec, first_bytes
from xdpgate.control.classify.engine import MODULES, Classifier, dispatch_tables
from xdpgate.control.classify.hosts import HostKnowledge
from xdpgate.control.classify.packet import FlowKey

from .build import CLIENT, SERVER, tcp, udp
from .test_voip_signalling import invite

PREFILTERED = [(name, l4) for name in MODULES
               for l4 in importlib.import_module(f"xdpgate.control.classify.{name}").SPEC.prefilter]

# payload bodies of many protocols; the tests put a first byte outside a module's set in front
_rnd = random.Random(11)
BODIES = [
    b"", b"\x00" * 11, b"\x00" * 23, b"\x00" * 73, bytes(range(1, 148)), bytes(range(91)),
    b"NVITE sip:bob@example.org SIP/2.0\r\nCall-ID: x\r\n\r\n", b"IP/2.0 200 OK\r\n\r\n",
    b"\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x80\x22\x00\x04xgb1",
    b"\xfe\xfd" + bytes(8) + b"\x00\x10" + bytes(16), b"\x00\x00\x00" + bytes(144),
    b"A\x00\x01" + bytes(40), b"S3INIT1" + bytes(20), b"\xbe\x02" + bytes(20),
] + [_rnd.randbytes(n) for n in (3, 11, 12, 16, 19, 20, 24, 31, 47, 64, 91, 147, 300)]


def _flow(l4: str, payloads: list[bytes], state: dict) -> Flow:
    f = Flow(key=FlowKey(l4, CLIENT, 40000, SERVER, 41000), first_ts=0.0, last_ts=0.0,
             proto=17 if l4 == "udp" else 6)
    for i, p in enumerate(payloads):
        f.samples.append(Sample(i % 2, p, i * 0.01, len(p) + 28))
        f.npayload += 1
    f.state.update(state)
    return f


class _Ctx:
    def __init__(self) -> None:
        self.knowledge = HostKnowledge()
        self.call_endpoints: dict = {}
        self.sip_calls: dict = {}

    def remember_call_endpoint(self, *a) -> None:
        raise AssertionError("a miss must not remember endpoints")

    def expect(self, *a) -> None:
        raise AssertionError("a miss must not announce flows")


def _expected_miss(pf: Prefilter, f: Flow):
    if f.npayload < pf.patience or any(f.state.get(k) for k in pf.waits_on):
        return None
    return GIVE_UP


@pytest.mark.parametrize(("name", "l4"), PREFILTERED)
def test_a_prefilter_miss_is_what_match_answers(name, l4):
    mod = importlib.import_module(f"xdpgate.control.classify.{name}")
    pf = mod.SPEC.prefilter[l4]
    assert pf.first and l4 in mod.SPEC.l4 and mod.SPEC.needs_payload
    outside = [b for b in range(256) if b not in pf.first]
    states = [{}] + [{k: True} for k in pf.waits_on]
    checked = 0
    for body in BODIES:
        for b in outside[:: max(1, len(outside) // 40)] + outside[-3:]:
            pl = bytes([b]) + body
            for earlier in ([], [b"\x80" + bytes(20)], [b"\x16" + bytes(30), b"x" * 12]):
                for st in states:
                    f = _flow(l4, earlier + [pl], st)
                    before = dict(f.state)
                    try:
                        got = mod.match(f, _Ctx())
                    except (IndexError, ValueError, KeyError, UnicodeError, OverflowError):
                        got = GIVE_UP  # what the engine makes of it
                    assert got is _expected_miss(pf, f), (name, l4, pl[:24], len(earlier), st)
                    assert f.state == before, (name, l4, pl[:24])
                    checked += 1
    assert checked > 500


def test_first_bytes_of_prefixes_values_and_ranges():
    assert first_bytes(b"GET ", b"POST", 0x16, range(0x80, 0x82)) == {0x47, 0x50, 0x16, 0x80, 0x81}
    assert first_bytes() == frozenset()


def test_dispatch_runs_a_module_only_for_its_first_bytes():
    spec_a = Spec("a", frozenset({"udp"}), prefilter={"udp": Prefilter(first_bytes(b"Q"), 2)})
    spec_b = Spec("b", frozenset({"udp"}))
    spec_c = Spec("c", frozenset({"udp"}), needs_payload=False)
    bare, by_byte = dispatch.table([(spec_c, len, None), (spec_a, min, None),
                                    (spec_b, max, None)], "udp")
    assert [e[0] for e in bare] == ["c"]
    assert [(e[0], e[2]) for e in by_byte[ord("Q")]] == [("c", len), ("a", min), ("b", max)]
    near = by_byte[ord("q")]  # one bit away: a miss, answered by the engine
    assert [(e[0], e[2]) for e in near] == [("c", len), ("a", None), ("b", max)]
    assert near[1][4:] == (2, ())


def test_engine_tables_follow_the_declarations():
    tables = dispatch_tables()
    by_byte = tables["udp"][1]
    called = {e[0] for e in by_byte[0x80] if e[2] is not None}
    assert {"rtp", "iax2"} <= called and not {"wireguard", "sip", "stun", "dtls"} & called
    called = {e[0] for e in by_byte[ord("I")] if e[2] is not None}
    assert "sip" in called and "rtp" not in called
    assert {e[0] for e in tables["tcp"][0]} == {"netproto"}, "no payload: only header readers"


def test_misses_give_up_as_the_modules_would(clf):
    # an RTP-looking first packet: wireguard/qq give up at once, SIP waits for a second packet
    rtp = b"\x80\x00\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78" + bytes(160)
    clf.feed(udp(rtp, 40000, 41000, ts=1.0))
    f = next(iter(clf._flows.values()))
    assert {"wireguard", "qq"} <= f.given_up and "sip" not in f.given_up
    clf.feed(udp(b"\x55" * 40, 40000, 41000, ts=1.1))
    assert {"sip", "discord", "rtp"} <= f.given_up


def test_a_tentative_label_is_dropped_when_its_author_misses(clf):
    # a STUN header (tentative 0.45), then a packet STUN would give up on: its guess goes
    stun_req = (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12))
    clf.feed(udp(stun_req, 40000, 41000, ts=1.0))
    f = next(iter(clf._flows.values()))
    assert f.tentative is not None and f.tentative.app == "stun"
    f.state.pop("stun_seen")  # as if STUN had not kept watching
    clf.feed(udp(b"\xc5" * 30, 40000, 41000, ts=1.1))
    assert "stun" in f.given_up and (f.tentative is None or f.tentative.app != "stun")


@pytest.mark.parametrize(("payload", "app"), [
    (b"invite sip:bob@example.org SIP/2.0\r\n\r\n", "sip"),  # methods are upper case
    (b" INVITE sip:bob@example.org SIP/2.0\r\n\r\n", "sip"),  # nothing before the method
    (b"\x05\x00\x00\x00" + bytes(144), "wireguard"),  # message types are 1-4
    (b"\x01\x01\x00\x00" + bytes(144), "wireguard"),  # reserved bytes are zero
])
def test_near_misses_are_not_labelled_by_the_prefiltered_module(clf, payload, app):
    lab = clf.feed(udp(payload, 40000, 41000, ts=1.0)) or clf.flush()[0][1]
    assert lab.app != app


def test_prefiltered_protocols_are_still_recognised(clf):
    lab = clf.feed(udp(invite("sip:alice@example.org", media_port=41000), 5060, 5060, ts=1.0))
    assert lab.app == "sip"
    c2 = Classifier()
    assert c2.feed(udp(b"\x01\x00\x00\x00" + bytes(144), 40000, 51820, ts=1.0)).app == "wireguard"
    c3 = Classifier()
    assert c3.feed(tcp(b"WA\x05\x02" + bytes(20), 40000, 443, ts=1.0)).app == "whatsapp"
