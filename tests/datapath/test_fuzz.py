"""Property tests: whatever arrives, the filter returns a verdict the policy allows for
that kind of frame (never XDP_ABORTED), and every frame is counted exactly once.
Random bytes and mutations (truncation, bit flips) of valid frames of every path,
tunnels included. Derandomized with fixed example counts, so CI runs are repeatable."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp, outcome  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS, XDP_TX
from xdpgate.control.layout import Reason, Verdict

FUZZ = settings(max_examples=1500, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

CORPUS = [bytes(f) for f in (
    fr.tcp(payload=b"GET / HTTP/1.1\r\n\r\n"),
    fr.udp(fr.C6, fr.S6, dport=9),
    fr.icmp(), fr.icmp(fr.C6, fr.S6),
    fr.tcp(vlans=(5, 6)),
    fr.eth() / IP(src=fr.C4, dst=fr.S4, options=[IPOption_RR(routers=["1.1.1.1"])]) / TCP(dport=9),
    fr.eth() / IPv6(src=fr.C6, dst=fr.S6) / IPv6ExtHdrHopByHop() /
    IPv6ExtHdrRouting(addresses=["2001:db8::5"]) / UDP(dport=9) / b"x",
    fr.eth() / IPv6(src=fr.C6, dst=fr.S6) / IPv6ExtHdrFragment(offset=3) / (b"frag" * 4),
    fr.eth() / IP(src=fr.C4, dst=fr.S4, frag=20, proto=6) / (b"f" * 20),
    fr.gtpu(fr.inner_udp(dport=9), seq=1, exts=[(0x85, fr.pdu_session_container())]),
    fr.gtpu(fr.inner_tcp(fr.C6, fr.S6), outer=(fr.T6A, fr.T6B)),
    fr.gre(fr.inner_udp(dport=9), key=1, seq=2, csum=True),
    fr.gre(fr.Ether(src=fr.MAC_A, dst=fr.MAC_B) / fr.inner_tcp(), key=3),
    fr.vxlan(fr.inner_udp(fr.C6, fr.S6, dport=9)),
    fr.ipip(fr.inner_udp(fr.C6, fr.S6, dport=9)),
    fr.arp(),
)]


@st.composite
def mutated(draw) -> bytes:
    """A valid frame, cut somewhere and with a few bits flipped in its headers."""
    b = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, min(len(b), 120) - 1))
        b[pos] ^= 1 << draw(st.integers(0, 7))
    cut = draw(st.integers(14, len(b)))
    return bytes(b[: cut if draw(st.booleans()) else len(b)])


FRAMES = st.one_of(st.binary(min_size=14, max_size=256), mutated())

# policy -> {reason: the verdict it must carry}
MIXED = """
default: allow
fragments: allow
unparsed: drop
rules:
  - {name: no-discard, match: {dst_port: 9}, action: drop}
  - {name: web, match: {proto: tcp, dst_port: 80}, action: allow}
"""
MIXED_VERDICT = {Reason.RULE: None, Reason.DEFAULT: Verdict.PASS, Reason.FRAGMENT: Verdict.PASS,
                 Reason.UNPARSED: Verdict.DROP, Reason.MALFORMED: Verdict.DROP,
                 Reason.TUNNEL_MALFORMED: Verdict.DROP}


@pytest.mark.parametrize("stateless", [False, True], ids=["tracked", "stateless_drops"])
def test_every_frame_gets_the_verdict_its_class_is_given(dp, stateless):
    dp.apply(MIXED + f"stateless_drops: {str(stateless).lower()}\n")
    sent = []

    @FUZZ
    @given(frame=FRAMES)
    def check(frame):
        rv, reason, verdict = outcome(dp, frame)
        sent.append(1)
        assert rv in (XDP_PASS, XDP_DROP), f"XDP action {rv}"
        assert reason in MIXED_VERDICT, f"reason {reason!r} has no business here"
        want = MIXED_VERDICT[reason]
        if want is not None:
            assert verdict == want, f"{reason.name} gave {verdict.name}"
        assert rv == (XDP_DROP if verdict == Verdict.DROP else XDP_PASS)

    check()
    assert fr.total_packets(dp) == len(sent) > 0


@pytest.mark.parametrize("policy,action", [
    ("default: allow\nfragments: allow\nunparsed: allow", XDP_PASS),
    ("default: drop\nfragments: drop\nunparsed: drop", XDP_DROP),
], ids=["allow_everything", "drop_everything"])
def test_a_uniform_policy_gives_one_verdict_to_anything(dp, policy, action):
    dp.apply(policy)
    sent = []

    @FUZZ
    @given(frame=FRAMES)
    def check(frame):
        assert dp.run(frame) == action
        sent.append(1)

    check()
    assert fr.total_packets(dp) == len(sent) > 0
    col = Verdict.PASS if action == XDP_PASS else Verdict.DROP
    assert sum(n for (r, v), (n, _) in dp.counters().items() if v == col) == len(sent)


def test_reject_answers_to_the_sender_or_drops_never_aborts(dp):
    dp.apply("""
default: drop
fragments: drop
unparsed: drop
rules:
  - {name: refuse, match: {}, action: reject}
""")
    sent, tx = [], []

    @FUZZ
    @given(frame=FRAMES)
    def check(frame):
        rv, out = dp.run_full(frame)
        sent.append(1)
        assert rv in (XDP_DROP, XDP_TX), f"XDP action {rv}"
        if rv == XDP_TX:
            tx.append(1)
            assert out[0:6] == frame[6:12] and out[6:12] == frame[0:6], "MACs swapped"
            assert len(out) >= 14 + 20 + 8

    check()
    assert fr.total_packets(dp) == len(sent) > 0
    assert dp.count(Reason.RULE, Verdict.TX) == len(tx) > 0, "some frames were answered"
