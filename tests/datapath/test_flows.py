"""The flow table: both directions of a conversation share one entry, counted per
direction from the initiator's point of view, with TCP flags and cached verdicts
per direction."""

from __future__ import annotations

import ctypes as ct
import time

import pytest

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp, outcome  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS
from xdpgate.control.layout import RULE_NONE, Action, Event, Reason, Verdict
from xdpgate.control.classify import taxonomy
from xdpgate.control.classify.engine import Expectation
from xdpgate.control.maps import addr16
from xdpgate.control.sampler import LabelSink

T, U = fr.tcp, fr.udp
F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def only_flow(d):
    flows = d.flows()
    assert len(flows) == 1, f"{len(flows)} flow entries, expected one"
    return flows[0]


# story -> (initiator, responder, initiator is endpoint a of the key)
ENDS = {
    "client_with_the_lower_address_v4": ((fr.C4, 40000), (fr.S4, 443), 1),
    "client_with_the_higher_address_v4": (("10.0.0.9", 40000), (fr.S4, 443), 0),
    "client_with_the_lower_address_v6": ((fr.C6, 40000), (fr.S6, 443), 1),
    "client_with_the_higher_address_v6": (("2001:db8::99", 40000), (fr.S6, 443), 0),
    "same_host_both_ends_lower_port_is_a": ((fr.C4, 2000), (fr.C4, 1000), 0),
}


@pytest.mark.parametrize("ini,resp,ini_is_a", ENDS.values(), ids=ENDS.keys())
def test_a_tcp_conversation_is_one_flow_counted_per_direction(dp, ini, resp, ini_is_a):
    (ca, cp), (sa, sp) = ini, resp
    out = [T(ca, sa, cp, sp, flags="S"), T(ca, sa, cp, sp, flags="A"),
           T(ca, sa, cp, sp, flags="FA", payload=b"bye")]
    back = [T(sa, ca, sp, cp, flags="SA"), T(sa, ca, sp, cp, flags="PA", payload=b"x" * 50)]
    for f in (out[0], back[0], out[1], back[1], out[2]):
        assert dp.run(f) == XDP_PASS
    key, fl = only_flow(dp)
    assert (fl.pkts[0], fl.pkts[1]) == (3, 2)
    assert (fl.bytes[0], fl.bytes[1]) == (sum(map(len, out)), sum(map(len, back)))
    assert fl.tcp_flags[0] == F_SYN | F_ACK | F_FIN
    assert fl.tcp_flags[1] == F_SYN | F_ACK | F_PSH
    assert fl.init_is_a == ini_is_a
    a, b = (ini, resp) if ini_is_a else (resp, ini)
    assert (bytes(key.addr_a), bytes(key.addr_b)) == (addr16(a[0]), addr16(b[0]))
    assert (key.port_a, key.port_b) == (fr.htons(a[1]), fr.htons(b[1]))
    assert (key.proto, key.tun_type, key.tun_id) == (6, 0, 0)
    assert (bytes(fl.outer_a), bytes(fl.outer_b)) == (bytes(key.addr_a), bytes(key.addr_b))
    assert 0 < fl.first_ns <= fl.last_ns
    assert dp.events()[Event.FLOW_NEW] == 1


def test_a_flow_is_stamped_with_the_monotonic_clock_and_its_last_packet_moves_it(dp):
    """The data path reads the coarse clock once a tick per CPU (cached by jiffies):
    the stamps still follow CLOCK_MONOTONIC, late by two ticks at most (the coarse clock's
    resolution and the cache's; a tick is 10 ms at most, HZ >= 100)."""
    late = 2 * 10_000_000
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    dp.run(U(dport=53))
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    _, fl = only_flow(dp)
    assert before - late <= fl.first_ns <= after
    assert fl.last_ns == fl.first_ns
    time.sleep(0.1)
    dp.run(U(fr.S4, fr.C4, 53, 40000))
    _, fl2 = only_flow(dp)
    assert fl2.first_ns == fl.first_ns
    assert 100_000_000 - late <= fl2.last_ns - fl.first_ns <= (
        time.clock_gettime_ns(time.CLOCK_MONOTONIC) - before + late)


def test_udp_both_ways_is_one_flow_and_ports_tell_flows_apart(dp):
    for f in (U(dport=53), U(fr.S4, fr.C4, 53, 40000), U(sport=40001, dport=53)):
        dp.run(f)
    flows = {frozenset((k.port_a, k.port_b)): v for k, v in dp.flows()}
    assert len(flows) == 2
    f1 = flows[frozenset((fr.htons(40000), fr.htons(53)))]
    f2 = flows[frozenset((fr.htons(40001), fr.htons(53)))]
    assert (f1.pkts[0], f1.pkts[1], f2.pkts[0], f2.pkts[1]) == (1, 1, 1, 0)
    assert dp.events()[Event.FLOW_NEW] == 2


def test_ping_and_its_reply_share_a_portless_flow(dp):
    from scapy.layers.inet import ICMP, IP

    dp.run(fr.icmp())
    dp.run(fr.eth() / IP(src=fr.S4, dst=fr.C4) / ICMP(type=0, id=7, seq=1))
    key, fl = only_flow(dp)
    assert (key.port_a, key.port_b, key.proto) == (0, 0, 1)
    assert (fl.pkts[0], fl.pkts[1]) == (1, 1)
    assert fl.tcp_flags[0] == fl.tcp_flags[1] == 0


def test_the_same_endpoints_over_tcp_and_udp_are_two_flows(dp):
    dp.run(T(dport=53))
    dp.run(U(dport=53))
    assert sorted(k.proto for k, _ in dp.flows()) == [6, 17]


def test_verdicts_are_cached_per_direction(dp):
    dp.apply("""
default: allow
rules:
  - {name: no-inbound-web, match: {proto: tcp, dst_port: 80}, action: drop}
""")
    assert outcome(dp, T(dport=80)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    assert outcome(dp, T(fr.S4, fr.C4, 80, 40000, flags="SA")) == (XDP_PASS, Reason.DEFAULT,
                                                                   Verdict.PASS)
    _, fl = only_flow(dp)
    assert (fl.action[0], fl.action[1]) == (Action.DROP, Action.ALLOW)
    assert (fl.rule[0], fl.rule[1]) == (0, RULE_NONE)
    assert (fl.pkts[0], fl.pkts[1]) == (1, 1)
    assert fl.override == Action.NONE


def test_a_dropped_flow_still_counts_its_packets(dp):
    dp.apply("default: drop")
    for _ in range(3):
        assert dp.run(T(flags="S")) == XDP_DROP
    _, fl = only_flow(dp)
    assert fl.pkts[0] == 3 and fl.tcp_flags[0] == F_SYN
    assert dp.count(Reason.DEFAULT, Verdict.DROP) == 3


def test_a_vlan_tag_does_not_split_a_flow(dp):
    dp.run(T(vlans=(10,)))
    dp.run(T(fr.S4, fr.C4, 80, 40000, flags="SA"))
    _, fl = only_flow(dp)
    assert (fl.pkts[0], fl.pkts[1]) == (1, 1)


def test_a_later_fragment_does_not_touch_the_flow(dp):
    from scapy.layers.inet import IP

    dp.run(U(dport=53))
    dp.run(fr.eth() / IP(src=fr.C4, dst=fr.S4, proto=17, frag=10) / (b"z" * 40))
    _, fl = only_flow(dp)
    assert fl.pkts[0] == 1


def test_the_flow_verdict_of_the_controller_overrides_the_rules(dp):
    """`flow_verdicts: override`: a verdict the controller left in the mailbox for the
    flow is taken by its next packet and beats the rules from then on."""
    from xdpgate.control import layout

    dp.apply("default: allow")
    dp.config(sample_pkts=8, fail_closed=0)
    assert dp.run(T(dport=22, flags="PA", payload=b"SSH-2.0-x\r\n")) == XDP_PASS  # sampled
    key, _ = only_flow(dp)
    dp.maps["mailbox"].set(key, layout.Class(app=0, category=0, call=0,
                                             override=Action.DROP, confidence=100))
    assert outcome(dp, T(dport=22, flags="A")) == (XDP_DROP, Reason.FLOW, Verdict.DROP)
    assert outcome(dp, T(fr.S4, fr.C4, 22, 40000, flags="A")) == (XDP_DROP, Reason.FLOW,
                                                                  Verdict.DROP)
    assert dp.events()[Event.CLASS_APPLIED] == 1
    assert dp.maps["mailbox"].get(key) is None, "the label is taken, not left behind"


@pytest.mark.parametrize("mode,verdict", [("override", "drop"), ("rules", "allow")])
def test_a_flow_is_listed_with_the_verdict_its_packets_get(dp, mode, verdict):
    """A controller verdict is the flow's verdict only where the policy lets it beat the
    rules (`flow_verdicts: override`); with `rules` the flow is listed as the rules decide
    it, and its packets pass, as listed."""
    from xdpgate.control import layout, observe

    dp.apply(f"default: allow\nflow_verdicts: {mode}\n")
    dp.config(sample_pkts=8, fail_closed=0)
    dp.run(T(dport=22, flags="PA", payload=b"SSH-2.0-x\r\n"))
    key, _ = only_flow(dp)
    dp.maps["mailbox"].set(key, layout.Class(app=0, category=0, call=0,
                                             override=Action.DROP, confidence=100))
    rv = dp.run(T(dport=22, flags="A"))
    assert rv == (XDP_DROP if verdict == "drop" else XDP_PASS)
    (row,) = observe.flows(dp.maps)
    assert row["verdict"] == verdict
    assert len(observe.flows(dp.maps, verdict=verdict)) == 1
    assert observe.flows(dp.maps, verdict="allow" if verdict == "drop" else "drop") == []


def test_a_flow_the_controller_was_sent_no_sample_of_does_not_look_in_the_mailbox(dp):
    """Only a sampled flow can have a label waiting: flows without sampling, and flows whose
    samples were all lost or which sent only bare TCP segments so far, skip the lookup."""
    from xdpgate.control import layout

    dp.config(sample_pkts=8, fail_closed=0)
    dp.run(T(dport=22, flags="S"))  # bare: counted in the budget, not sent
    dp.config(sample_pkts=0, fail_closed=0)
    dp.run(U(dport=53))
    for key, _ in dp.flows():
        dp.maps["mailbox"].set(key, layout.Class(app=0, category=0, call=0,
                                                 override=Action.DROP, confidence=100))
    assert dp.run(T(dport=22, flags="A")) == XDP_PASS
    assert dp.run(U(dport=53)) == XDP_PASS
    assert dp.events()[Event.CLASS_APPLIED] == 0
    assert all(f.flags & layout.FlowFlag.SAMPLED == 0 for _, f in dp.flows())


def test_an_sdp_expectation_labels_a_flow_from_its_first_packet_while_one_can_live(dp):
    LabelSink(dp.maps).expect(Expectation("udp", fr.S4, 30000, "rtp", "voip", "app", 0.0),
                              0, 0, ttl_s=60)
    dp.run(U(fr.C4, fr.S4, sport=40000, dport=30000))
    _, f = only_flow(dp)
    assert (f.app, dp.events()[Event.EXPECT_HIT]) == (taxonomy.app_id("rtp"), 1)
    # past the time the controller said no expectation lives, new flows do not look
    dp.maps["expect_live"].set(ct.c_uint32(0), ct.c_uint64(dp.now_ns() - 10**9))
    dp.run(U(fr.C4, fr.S4, sport=40001, dport=30000))
    assert dp.events()[Event.EXPECT_HIT] == 1


def test_a_flow_idle_since_a_policy_change_is_listed_with_the_rule_that_decided_it(dp):
    """Its cached rule slot is of the policy it was decided under: listed by that policy's
    names, not by whichever rule holds the slot now; once that policy is two changes back,
    the rule is not named at all (rather than misnamed)."""
    from xdpgate.control import observe

    def policy(*names):
        return {"default": "allow", "rules": [
            {"name": n, "match": {"proto": "udp", "dst_port": 100 + i}, "action": "allow"}
            for i, n in enumerate(names)]}

    def listed(dport):
        rows = observe.flows(dp.maps, port=dport, rule_names=dp.ap.gen_names)
        assert len(rows) == 1
        return rows[0]["rule"]

    dp.apply(policy("dns", "web"))
    dp.run(U(dport=101))
    assert listed(101) == "web"
    dp.apply(policy("voice", "dns", "web"))  # slot 1 is "dns" now, and port 101 its port
    assert listed(101) == "web"  # idle since: still the rule that decided it
    dp.run(U(dport=101))
    assert listed(101) == "dns"  # decided afresh
    dp.apply(policy("a", "b"))
    dp.apply(policy("c", "d"))
    assert listed(101) is None  # decided two policies back: not named
