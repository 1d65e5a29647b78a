"""Stateless drops (policy `stateless_drops: true`): a flow dropped from its first packet by
a verdict no label could overturn takes no flow entry, so a flood of spoofed sources leaves
the table to the live flows."""

from __future__ import annotations

import random

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS
from xdpgate.control.layout import Event, Reason, Verdict

U, T = fr.udp, fr.tcp

BLOCKLIST = """
default: allow
stateless_drops: {stateless}
sets: {{blocklist: [198.18.0.0/15, "2001:db8:bad::/48"]}}
rules:
  - {{name: blocklist, match: {{src_set: blocklist}}, action: drop}}
"""


def flood(d, n: int, seed: int = 1) -> list:
    """First packets of n flows from random spoofed sources inside the blocklist."""
    rnd = random.Random(seed)
    frames = []
    for i in range(n):
        if i % 4 == 3:
            src, dst = f"2001:db8:bad::{rnd.getrandbits(16):x}:{rnd.getrandbits(16):x}", fr.S6
        else:
            src, dst = f"198.{18 + rnd.randrange(2)}.{rnd.randrange(256)}.{rnd.randrange(256)}", fr.S4
        frames.append(T(src, dst, rnd.randrange(1024, 65536), 80, flags="S"))
    for f in frames:
        assert d.run(f) == XDP_DROP
    return frames


def test_a_spoofed_flood_from_a_blocklist_takes_no_flow_entries(dp):
    dp.apply(BLOCKLIST.format(stateless="true"))
    assert dp.run(U(fr.C4, fr.S4, 40000, 53)) == XDP_PASS  # a live flow
    ev0 = dp.events()
    flood(dp, 400)
    ev = dp.events()
    assert ev[Event.DROP_UNTRACKED] - ev0[Event.DROP_UNTRACKED] == 400
    assert ev[Event.FLOW_NEW] == ev0[Event.FLOW_NEW] == 1
    assert len(dp.flows()) == 1, "only the live flow is in the table"
    assert dp.count(Reason.RULE, Verdict.DROP) == 400
    assert dp.ap.rule_hits()["blocklist"][0] == 400


def test_without_stateless_drops_every_flow_of_the_flood_gets_an_entry(dp):
    dp.apply(BLOCKLIST.format(stateless="false"))
    flood(dp, 400)
    ev = dp.events()
    assert (ev[Event.FLOW_NEW], ev[Event.DROP_UNTRACKED]) == (400, 0)
    assert len(dp.flows()) == 400


def test_a_drop_a_later_label_could_overturn_keeps_its_flow(dp):
    """An allow for VoIP comes first: a label could still let the flow through, so the
    flow is kept (and sampled, were sampling on) even though its first packet is dropped."""
    dp.apply("""
default: allow
stateless_drops: true
sets: {blocklist: [198.18.0.0/15]}
rules:
  - {name: voip-ok, match: {category: voip}, action: allow}
  - {name: blocklist, match: {src_set: blocklist}, action: drop}
""")
    assert dp.run(U("198.18.0.9", fr.S4, 40000, 5060)) == XDP_DROP
    ev = dp.events()
    assert (ev[Event.FLOW_NEW], ev[Event.DROP_UNTRACKED]) == (1, 0)
    assert len(dp.flows()) == 1


def test_a_class_rule_after_the_drop_does_not_keep_the_flow(dp):
    dp.apply("""
default: allow
stateless_drops: true
sets: {blocklist: [198.18.0.0/15]}
rules:
  - {name: blocklist, match: {src_set: blocklist}, action: drop}
  - {name: voip-ok, match: {category: voip}, action: allow}
""")
    assert dp.run(U("198.18.0.9", fr.S4, 40000, 5060)) == XDP_DROP
    assert (dp.events()[Event.DROP_UNTRACKED], len(dp.flows())) == (1, 0)


def test_a_drop_default_is_stateless_only_where_no_rule_names_a_class(dp):
    dp.apply("default: drop\nstateless_drops: true\n")
    assert outcome_default_drop(dp) == (1, 0)
    dp.reset()
    dp.apply("""
default: drop
stateless_drops: true
rules:
  - {name: p2p-ok, match: {category: p2p}, action: allow}
""")
    assert outcome_default_drop(dp) == (0, 1)


def outcome_default_drop(d) -> tuple[int, int]:
    """(untracked drops, flow entries) after one first packet the default drops."""
    assert d.run(U(fr.C4, fr.S4, 40000, 53)) == XDP_DROP
    assert d.count(Reason.DEFAULT, Verdict.DROP) == 1
    return d.events()[Event.DROP_UNTRACKED], len(d.flows())


def test_allowed_flows_are_tracked_and_their_replies_from_a_blocklisted_peer_still_drop(dp):
    """stateless_drops changes nothing for a flow that already has its entry."""
    dp.apply(BLOCKLIST.format(stateless="true"))
    assert dp.run(T(fr.C4, "198.18.7.7", 40000, 443)) == XDP_PASS  # out to a blocked peer
    assert dp.run(T("198.18.7.7", fr.C4, 443, 40000, flags="SA")) == XDP_DROP  # its reply
    (_, f), = dp.flows()
    assert (f.pkts[0], f.pkts[1]) == (1, 1)
    assert dp.events()[Event.DROP_UNTRACKED] == 0
