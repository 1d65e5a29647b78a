"""Policy, as the operator writes it: each match field, each action, first match wins,
the default, 256 rules, per-rule hits, and a policy change reaching flows that are
already running."""

from __future__ import annotations

import itertools
import time

import pytest
import yaml
from scapy.layers.inet import IP, UDP

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp, outcome  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS
from xdpgate.control.layout import Action, Reason, Verdict
from xdpgate.control.policy import PolicyError

SETS = {
    "wide": ["10.0.0.0/8", "2001:db8::/32"],
    "narrow": ["10.1.2.0/24", "2001:db8:1::/48"],  # inside wide: nested prefixes
    "servers": ["10.0.0.2/32", "10.9.0.0/16"],
}


def one_rule(match: dict) -> str:
    return yaml.safe_dump({"default": "allow", "sets": SETS,
                           "rules": [{"name": "under-test", "match": match, "action": "drop"}]})


T, U = fr.tcp, fr.udp
# story -> (match, frames it must drop, frames it must let pass)
FIELDS = {
    "src_cidr_drops_that_sender_only": (
        {"src": "10.0.0.0/24"}, [T("10.0.0.7", "10.5.0.1")],
        [T("10.0.1.7", "10.5.0.1"), T("10.5.0.1", "10.0.0.7")]),
    "dst_cidr_drops_traffic_to_it_only": (
        {"dst": "10.0.0.2"}, [T(dst="10.0.0.2")], [T(src="10.0.0.2", dst="10.0.0.1")]),
    "ip_cidr_drops_either_direction": (
        {"ip": "10.7.0.0/16"}, [T("10.7.1.1", "10.0.0.1"), T("10.0.0.1", "10.7.1.1")],
        [T("10.8.1.1", "10.0.0.1")]),
    "src_list_mixes_v4_and_v6": (
        {"src": ["10.0.0.0/24", "2001:db8:5::/48"]},
        [T("10.0.0.9", "10.6.0.1"), T("2001:db8:5::1", "2001:db8:6::1")],
        [T("2001:db8:6::1", "2001:db8:5::1")]),
    "src_set_matches_members_as_sender": (
        {"src_set": "servers"}, [T("10.9.3.3", "10.1.1.1")], [T("10.1.1.1", "10.9.3.3")]),
    "dst_set_matches_members_as_receiver": (
        {"dst_set": "servers"}, [T(dst="10.0.0.2")], [T("10.0.0.2", "10.0.0.1")]),
    "ip_set_matches_either_endpoint": (
        {"ip_set": "servers"}, [T("10.9.0.1", "10.200.0.1"), T("10.200.0.1", "10.9.0.1")],
        [T("10.200.0.1", "10.201.0.1")]),
    "outer_set_holds_addresses_of_a_nested_inner_set": (
        {"src_set": "wide", "dst_port": 1},
        [T("10.1.2.3", "192.0.2.1", dport=1), T("2001:db8:1::9", "2001:db9::1", dport=1)],
        [T("192.0.2.1", "10.1.2.3", dport=1), T("10.1.2.3", "192.0.2.1", dport=2)]),
    "inner_set_of_a_nested_pair_is_the_narrow_one": (
        {"src_set": "narrow"}, [T("10.1.2.3", "192.0.2.1")], [T("10.1.3.3", "192.0.2.1")]),
    "list_of_sets_is_any_of_them": (
        {"dst_set": ["narrow", "servers"]}, [T(dst="10.1.2.200"), T(dst="10.9.9.9")],
        [T(dst="10.0.0.3")]),
    "proto_by_name": (
        {"proto": "udp"}, [U(), U(fr.C6, fr.S6)], [T(), fr.icmp()]),
    "proto_icmp_and_icmpv6": (
        {"proto": ["icmp", "icmpv6"]}, [fr.icmp(), fr.icmp(fr.C6, fr.S6)], [U(), T()]),
    "proto_by_number": (
        {"proto": [132]}, [fr.eth() / IP(src=fr.C4, dst=fr.S4, proto=132) / (b"\0" * 16)],
        [U(), T()]),
    "proto_any_is_every_protocol": (
        {"proto": "any", "dst": "10.0.0.2"}, [U(), T(), fr.icmp()], [U(dst="10.0.0.3")]),
    "src_port_single": (
        {"src_port": 40000}, [T(sport=40000), U(sport=40000)], [T(sport=40001)]),
    "dst_port_range_ends_are_inside": (
        {"proto": "udp", "dst_port": "5060-5061"}, [U(dport=5060), U(dport=5061)],
        [U(dport=5059), U(dport=5062), T(dport=5060)]),
    "port_matches_either_side": (
        {"port": [22, "8000-8100"]}, [T(dport=22), T(sport=22, dport=5), T(sport=8050, dport=5)],
        [T(sport=23, dport=7999)]),
    "dst_port_list": (
        {"dst_port": [1, 3, "10-11"]}, [T(dport=1), T(dport=3), T(dport=11)],
        [T(dport=2), T(dport=12)]),
    "port_rule_never_matches_a_packet_without_ports": (
        {"dst_port": "0-65535"}, [T(dport=0), U(dport=65535)], [fr.icmp()]),
    "every_field_of_a_rule_must_hold": (
        {"proto": "tcp", "src": "10.0.0.1", "dst_set": "servers", "dst_port": 443},
        [T(dport=443)], [U(dport=443), T(dport=444), T(src="10.0.0.3", dport=443)]),
}


@pytest.mark.parametrize("match,hits,misses", FIELDS.values(), ids=FIELDS.keys())
def test_each_match_field(dp, match, hits, misses):
    dp.apply(one_rule(match))
    for f in hits:
        assert outcome(dp, f) == (XDP_DROP, Reason.RULE, Verdict.DROP), f.summary()
    for f in misses:
        assert outcome(dp, f) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS), f.summary()
    assert dp.ap.rule_hits()["under-test"][0] == len(hits)


# flows as the classifier labels them: (app, category, call kind)
LABELS = {"pstn-call": ("rtp", "voip", 2), "app-call": ("whatsapp", "voip", 1),
          "torrent": ("bittorrent", "p2p", 0)}
CLASS_FIELDS = {  # story -> (match, the labelled flows it drops)
    "app_alone_drops_that_app_only": ({"app": "whatsapp"}, {"app-call"}),
    "category_alone_drops_both_calls": ({"category": "voip"}, {"pstn-call", "app-call"}),
    "call_alone_tells_a_phone_call_from_an_app_call": ({"call": "pstn"}, {"pstn-call"}),
    "call_app_drops_the_app_call_only": ({"call": "app"}, {"app-call"}),
}


@pytest.mark.parametrize("match,dropped", CLASS_FIELDS.values(), ids=CLASS_FIELDS.keys())
def test_each_class_field_alone_decides_by_the_label_the_flow_was_given(dp, match, dropped):
    """A rule that names only a class field (nothing the packet itself shows) drops the
    flows whose label holds that value, from the packet after the label, and no others."""
    from xdpgate.control import layout
    from xdpgate.control.classify import taxonomy

    dp.apply(one_rule(match))
    dp.config(sample_pkts=8, fail_closed=0)
    ports = dict(zip(LABELS, (41000, 41001, 41002)))
    for name, (app, cat, call) in LABELS.items():
        first = U(sport=ports[name], dport=5004, payload=b"x" * 40)
        assert outcome(dp, first) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS), "unlabelled yet"
        (key,) = [k for k, _ in dp.flows() if fr.htons(ports[name]) in (k.port_a, k.port_b)]
        dp.maps["mailbox"].set(key, layout.Class(app=taxonomy.app_id(app),
                                                 category=taxonomy.category_id(cat), call=call,
                                                 override=Action.NONE, confidence=100))
    for name in LABELS:
        want = ((XDP_DROP, Reason.RULE, Verdict.DROP) if name in dropped
                else (XDP_PASS, Reason.DEFAULT, Verdict.PASS))
        assert outcome(dp, U(sport=ports[name], dport=5004, payload=b"y" * 40)) == want, name
    assert dp.ap.rule_hits()["under-test"][0] == len(dropped)


ORDERED = """
default: drop
rules:
  - {name: admin-ssh, match: {src: 10.0.0.1, dst_port: 22}, action: allow}
  - {name: no-ssh, match: {dst_port: 22}, action: drop}
  - {name: web, match: {proto: tcp, dst_port: [80, 443]}, action: allow}
"""


def test_first_match_wins_and_unmatched_traffic_takes_the_default(dp):
    dp.apply(ORDERED)
    assert outcome(dp, T(dport=22)) == (XDP_PASS, Reason.RULE, Verdict.PASS)
    assert outcome(dp, T(src="10.0.0.5", dport=22)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    assert outcome(dp, T(dport=443)) == (XDP_PASS, Reason.RULE, Verdict.PASS)
    assert outcome(dp, U(dport=443)) == (XDP_DROP, Reason.DEFAULT, Verdict.DROP)
    hits = dp.ap.rule_hits()
    assert {n: h[0] for n, h in hits.items()} == {"admin-ssh": 1, "no-ssh": 1, "web": 1}
    assert dp.ap.default_hits()[0] == 1
    assert hits["web"][1] == len(T(dport=443))


def test_rule_and_default_hits_only_grow_across_policy_changes(dp):
    """Hits are counted by rule name (and the default's) across policy changes: the bank of
    the policy before keeps its hits until it is rewritten, and they count meanwhile (a
    counter that fell after each change would read as a reset to Prometheus)."""
    one = {"default": "allow", "rules": [{"name": "a", "match": {"dst_port": 9}, "action": "drop"}]}
    two = {"default": "allow", "rules": [{"name": "b", "match": {"dst_port": 10}, "action": "drop"},
                                         *one["rules"]]}
    seen = []
    for policy, sport in ((one, 1000), (two, 2000), (one, 3000), (two, 4000)):
        dp.apply(policy)
        for i in range(3):
            dp.run(fr.udp(sport=sport + i, dport=9))
        dp.run(fr.udp(sport=sport, dport=53))
        seen.append((dp.ap.rule_hits()["a"][0], dp.ap.default_hits()[0]))
    assert seen == [(3, 1), (6, 2), (9, 3), (12, 4)]


def test_swapping_two_rules_swaps_the_winner(dp):
    swapped = ORDERED.replace("admin-ssh", "TMP").replace("no-ssh", "admin-ssh")
    lines = swapped.splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    dp.apply("\n".join(lines).replace("TMP", "no-ssh"))
    assert outcome(dp, T(dport=22)) == (XDP_DROP, Reason.RULE, Verdict.DROP)


def test_default_drop_with_no_rules_drops_everything_it_parses(dp):
    dp.apply("default: drop")
    for f in (T(), U(fr.C6, fr.S6), fr.icmp()):
        assert outcome(dp, f) == (XDP_DROP, Reason.DEFAULT, Verdict.DROP)
    assert outcome(dp, fr.arp()) == (XDP_PASS, Reason.UNPARSED, Verdict.PASS)


def test_256_rules_load_and_the_256th_matches(dp):
    rules = [{"name": f"r{i:03d}", "match": {"proto": "udp", "dst_port": 1000 + i},
              "action": "allow"} for i in range(255)]
    rules.append({"name": "r255", "match": {"dst_port": 9}, "action": "drop"})
    dp.apply({"default": "allow", "rules": rules})
    assert outcome(dp, U(dport=9)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    assert outcome(dp, U(dport=1254)) == (XDP_PASS, Reason.RULE, Verdict.PASS)
    assert outcome(dp, U(dport=1255)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    hits = dp.ap.rule_hits()
    assert (hits["r255"][0], hits["r254"][0], hits["r000"][0]) == (1, 1, 0)
    ((_, flow),) = [kv for kv in dp.flows() if fr.htons(9) in (kv[0].port_a, kv[0].port_b)]
    assert flow.rule[0] == 255


def test_a_257th_rule_is_refused_and_the_running_policy_stays(dp):
    dp.apply(one_rule({"dst_port": 9}))
    rules = [{"name": f"r{i}", "match": {"dst_port": i + 1}, "action": "allow"}
             for i in range(257)]
    with pytest.raises(PolicyError, match="rules"):
        dp.apply({"default": "allow", "rules": rules})
    assert outcome(dp, U(dport=9)) == (XDP_DROP, Reason.RULE, Verdict.DROP)


def test_rate_limit_passes_the_burst_then_drops_and_counts_it(dp):
    dp.apply("""
default: allow
rules:
  - {name: slow-dns, match: {proto: udp, dst_port: 53}, action: rate_limit,
     rate_limit: {pps: 1, burst: 1}}
""")
    got = [outcome(dp, U(sport=40000 + i, dport=53)) for i in range(4)]
    assert got[:1] == [(XDP_PASS, Reason.RULE, Verdict.PASS)]
    assert got[1:] == [(XDP_DROP, Reason.RATE_LIMIT, Verdict.DROP)] * 3
    assert dp.ap.rule_hits()["slow-dns"][0] == 4
    assert outcome(dp, U(dport=54)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)


def test_a_policy_change_gives_a_rate_limited_rule_no_fresh_burst(dp):
    """A per-rule bucket is kept through a change that leaves the rule's name and limit
    as they were (an API edit a minute would otherwise grant a burst a minute); a rule
    whose limit changed starts with a full bucket."""
    # 1 byte/s (nothing comes back while the test runs), a burst of two or three 54-byte frames
    limited = "  - {name: slow-dns, match: {proto: udp, dst_port: 53}, action: rate_limit,\n" \
              "     rate_limit: {bps: 8bit, burst: %d}}\n"
    other = "  - {name: no-telnet, match: {proto: tcp, dst_port: 23}, action: drop}\n"
    assert len(U(sport=40000, dport=53)) == 54
    dp.apply("default: allow\nrules:\n" + limited % 120)
    got = [outcome(dp, U(sport=40000 + i, dport=53))[2] for i in range(3)]
    assert got == [Verdict.PASS, Verdict.PASS, Verdict.DROP]  # the burst, spent
    dp.apply("default: allow\nrules:\n" + other + limited % 120)  # its slot moves: 0 -> 1
    assert outcome(dp, U(sport=40010, dport=53))[2] == Verdict.DROP
    dp.apply("default: allow\nrules:\n" + other + limited % 170)  # a new limit: a new bucket
    got = [outcome(dp, U(sport=40020 + i, dport=53))[2] for i in range(4)]
    assert got == [Verdict.PASS] * 3 + [Verdict.DROP]


@pytest.mark.parametrize("per", ["rule", "flow"])
def test_a_limit_hit_from_two_cpus_at_once_lets_through_no_more_than_its_rate(dp, per):
    """Two CPUs take from one bucket at the same time (test-runs from two threads pinned to
    two CPUs; a flow's two directions, which a NIC's queues may well split): what passes
    stays within the burst plus the rate over the time they ran. A bucket read and written
    without care let 11 times the rate through."""
    import os
    import threading

    from xdpgate.control import bpfsys

    cpus = sorted(os.sched_getaffinity(0))[:2]
    assert len(cpus) == 2, "this test needs two CPUs (CI has them)"
    pps, burst = 200_000, 50
    dp.apply("default: allow\nrules:\n  - {name: lim, match: {proto: udp, port: 53}, "
             f"action: rate_limit, rate_limit: {{pps: {pps}, burst: {burst}, per: {per}}}}}\n")
    frames = [bytes(U(dport=53)), bytes(U(fr.S4, fr.C4, sport=53, dport=40000))]
    t0 = time.monotonic_ns()
    dp.run(frames[0])  # the flow's entry, before the CPUs race for it

    def blast(cpu: int, frame: bytes) -> None:
        os.sched_setaffinity(0, {cpu})
        for _ in range(4):
            bpfsys.test_run(dp.f.prog_fd, frame, repeat=100_000)

    threads = [threading.Thread(target=blast, args=a) for a in zip(cpus, frames)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran_s = (time.monotonic_ns() - t0) / 1e9
    passed = dp.count(Reason.RULE, Verdict.PASS)
    assert passed + dp.count(Reason.RATE_LIMIT, Verdict.DROP) == 800_001
    assert 0 < passed <= burst + pps * ran_s
    assert len(dp.flows()) == 1


def test_a_per_flow_limit_gives_each_flow_its_own_bucket_for_both_directions(dp):
    dp.apply("default: allow\nrules:\n  - {name: lim, match: {proto: udp, port: 53}, "
             "action: rate_limit, rate_limit: {bps: 8bit, burst: 120, per: flow}}\n")
    a, a_back, b = U(dport=53), U(fr.S4, fr.C4, sport=53, dport=40000), U(sport=40001, dport=53)
    assert [outcome(dp, f)[2] for f in (a, a_back, a, b, b)] == \
        [Verdict.PASS, Verdict.PASS, Verdict.DROP, Verdict.PASS, Verdict.PASS]


def test_a_policy_change_reaches_a_running_flow(dp):
    flow = T(flags="A", dport=8080)
    assert outcome(dp, flow) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    gen = dp.apply(one_rule({"dst_port": 8080}))
    assert outcome(dp, flow) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    ((_, f),) = dp.flows()
    assert f.pol_gen == gen and f.pkts[0] == 2
    dp.apply("default: allow")
    assert outcome(dp, flow) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    assert len(dp.flows()) == 1, "the flow entry survives the policy changes"


def test_reason_counters_carry_bytes_of_the_frames(dp):
    dp.apply(one_rule({"proto": "udp"}))
    a, b = U(payload=b"a" * 100), T()
    dp.run(a)
    dp.run(b)
    c = dp.counters()
    assert c[(Reason.RULE, Verdict.DROP)] == (1, len(a))
    assert c[(Reason.DEFAULT, Verdict.PASS)] == (1, len(b))
    assert fr.total_packets(dp) == 2


def test_a_udp_frame_is_not_confused_with_its_inner_bytes(dp):
    """A UDP payload that looks like a TCP header to port 9 does not match a TCP rule."""
    dp.apply(one_rule({"proto": "tcp", "dst_port": 9}))
    frame = fr.eth() / IP(src=fr.C4, dst=fr.S4) / UDP(sport=1, dport=9) / bytes(fr.tcp(dport=9))
    assert outcome(dp, frame) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)


# The IPv4 table (control/addr4.py) and the IPv6 hint in front of the trie
# (control/addrhint.py) are computed in Python and read in C, so these prefixes cover each
# way an entry gets set: a /32 (a spilled /24) and a /23 (two /24 entries), a /8 (a run of
# 65,536), IPv6 /128 and /48 (one hashed /32 slot each), a /20 (4,096 hashed slots) and a
# /12 (too many: every IPv6 slot).
HINTED = {
    "blocked": ["198.51.100.7/32", "203.0.112.0/23", "11.0.0.0/8",
                "2001:db8:5::9/128", "2001:db8:77::/48", "2a00:1000::/20"],
}
HINT_MEMBERS = ["198.51.100.7", "203.0.112.1", "203.0.113.254", "11.0.0.1", "11.255.255.254",
                "2001:db8:5::9", "2001:db8:77:ffff::1", "2a00:1450::1", "2a00:1fff:ffff::1"]
HINT_OUTSIDERS = ["198.51.100.8", "203.0.114.1", "12.0.0.1", "10.255.255.255",
                  "2001:db8:5::8", "2001:db8:78::1", "2a00:2000::1"]


def blocked_by_set(prefixes: list[str]) -> dict:
    return {"default": "allow", "sets": {"blocked": prefixes},
            "rules": [{"name": "blocked", "match": {"ip_set": "blocked"}, "action": "drop"}]}


def test_every_address_of_a_set_prefix_is_found_behind_the_address_hint(dp):
    dp.apply(blocked_by_set(HINTED["blocked"]))
    for a in HINT_MEMBERS:
        peer = fr.S6 if ":" in a else fr.S4
        assert outcome(dp, U(a, peer)) == (XDP_DROP, Reason.RULE, Verdict.DROP), a
        assert outcome(dp, U(peer, a, sport=40001)) == (XDP_DROP, Reason.RULE, Verdict.DROP), a
    for a in HINT_OUTSIDERS:
        peer = fr.S6 if ":" in a else fr.S4
        assert outcome(dp, U(a, peer)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS), a


def test_a_prefix_taken_out_of_a_set_stops_matching_and_one_added_starts(dp):
    dp.apply(blocked_by_set(HINTED["blocked"]))
    assert outcome(dp, U("11.2.3.4", fr.S4)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    dp.apply(blocked_by_set(["198.51.100.7/32", "2001:db8:77::/48", "12.1.0.0/16"]))
    assert outcome(dp, U("11.2.3.5", fr.S4)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    assert outcome(dp, U("2a00:1450::2", fr.S6)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    assert outcome(dp, U("12.1.200.1", fr.S4)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    assert outcome(dp, U("2001:db8:77::5", fr.S6)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    # and back, through the other bank, which still holds the first hint
    dp.apply(blocked_by_set(HINTED["blocked"]))
    assert outcome(dp, U("11.2.3.6", fr.S4)) == (XDP_DROP, Reason.RULE, Verdict.DROP)
    assert outcome(dp, U("12.1.200.2", fr.S4)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS)


def test_where_the_kernel_refuses_a_writable_mapping_the_ipv4_table_is_written_by_batches(
        dp, monkeypatch):
    """The IPv4 table is written through a shared mapping of the map; a kernel that refuses
    one (PROT_WRITE on a frozen or read-only map) gets the same words by batch updates."""
    from xdpgate.control import maps

    real = maps.mmap.mmap
    refused = []

    def no_write(fd, size, flags, prot):
        if prot & maps.mmap.PROT_WRITE:
            refused.append(size)
            raise PermissionError(1, "Operation not permitted")
        return real(fd, size, flags, prot)

    monkeypatch.setattr(maps.mmap, "mmap", no_write)
    dp.apply(blocked_by_set(["10.44.0.0/16", "10.45.1.0/24"]))
    assert refused, "the table was not written through a mapping first"
    monkeypatch.undo()
    for a in ("10.44.0.1", "10.44.255.254", "10.45.1.9"):
        assert outcome(dp, U(a, fr.S4)) == (XDP_DROP, Reason.RULE, Verdict.DROP), a
    for a in ("10.43.255.255", "10.45.0.1", "10.45.2.1"):
        assert outcome(dp, U(a, fr.S4)) == (XDP_PASS, Reason.DEFAULT, Verdict.PASS), a


def test_an_error_while_a_map_is_mapped_comes_out_as_itself(dp):
    """A failure while a numpy view of a mapped map is alive (a test timeout fired there on
    6.1 under QEMU) is reported as itself, not as mmap's "cannot close exported pointers"."""
    import numpy as np

    with pytest.raises(ZeroDivisionError):
        with dp.maps["addr4"].mapped(4096) as mm:
            view = np.frombuffer(mm, dtype=np.uint64, count=8)
            assert view.size == 8
            1 / 0  # noqa: B018


def test_nested_ipv4_prefixes_of_different_sets_give_the_longest_match_its_rule(dp):
    """A /25 and a /32 inside a /24 inside a /8: each address gets the rule of the most
    specific set holding it, also where a /24 holds longer prefixes and its own class
    comes from the /8 (the /24's base)."""
    dp.apply({"default": "allow",
              "sets": {"narrow": ["10.1.2.128/25", "10.1.2.200/32"],
                       "mid": ["10.1.2.0/24", "10.9.9.9/32"], "wide": ["10.0.0.0/8"]},
              "rules": [{"name": "narrow", "match": {"src_set": "narrow"}, "action": "drop"},
                        {"name": "mid", "match": {"src_set": "mid"}, "action": "allow"},
                        {"name": "wide", "match": {"src_set": "wide"}, "action": "drop"}]})
    drop = (XDP_DROP, Reason.RULE, Verdict.DROP)
    allow = (XDP_PASS, Reason.RULE, Verdict.PASS)
    for src, want in [("10.1.2.129", drop), ("10.1.2.200", drop), ("10.1.2.255", drop),
                      ("10.1.2.127", allow), ("10.1.2.5", allow), ("10.9.9.9", allow),
                      ("10.9.9.8", drop), ("10.9.9.10", drop), ("10.1.3.1", drop),
                      ("10.255.255.255", drop),
                      ("11.0.0.0", (XDP_PASS, Reason.DEFAULT, Verdict.PASS))]:
        assert outcome(dp, U(src, fr.S4)) == want, src


def test_a_restarted_controller_reads_back_the_policy_the_filter_holds(dp):
    """What a controller adopting a running filter reads from its maps is what was applied:
    header, rules, field and port bitmaps, address classes and every IPv4 and IPv6 prefix."""
    dp.apply(yaml.safe_dump({
        "default": "drop", "sets": SETS,
        "rules": [{"name": "n", "match": {"src_set": "narrow", "proto": "udp",
                                          "dst_port": "5060-5061"}, "action": "allow"},
                  {"name": "w", "match": {"ip_set": "wide", "port": [80, 443]},
                   "action": "allow"},
                  {"name": "s", "match": {"dst_set": "servers", "proto": "tcp"},
                   "action": "drop"}]}))
    bank = dp.ap.active_bank()
    want, got = dp.ap.banks[bank], dp.ap.read_bank(bank)
    assert got.read_back and not want.read_back
    assert any(k[0] == 6 for k in want.lpm) and any(k[0] == 4 for k in want.lpm)
    for f in ("header", "rules", "fieldbits", "portbits", "addrclass", "tunid", "lpm",
              "bases4"):
        assert getattr(got, f) == getattr(want, f), f
    # a trie walked in batches of one: each step resumes after the key the last one ended on
    lpm6 = dp.maps["lpm6"]
    walked = [bytes(k) for k, _ in itertools.islice(lpm6.items(chunk=1), 100)]
    assert sorted(walked) == sorted(bytes(k) for k in lpm6.keys()) and len(walked) >= 2


def test_an_edit_of_a_big_blocklist_takes_effect_from_the_next_packet_and_leaves_exact_banks(dp):
    """An operator adds an address and a /24 to a 3,000-entry blocklist and takes out a /32
    and a /16. The compile starts from the one applied last and the applier writes only
    what changed, yet the next packets see the edit and each bank, read back from the
    kernel, holds what a compile from scratch gives (its IPv4 table included)."""
    import random

    from xdpgate.control import addr4, compile as comp, layout, policy as pol, sets

    rnd = random.Random(5)
    hosts = sorted({f"10.66.{rnd.randrange(256)}.{rnd.randrange(1, 255)}/32"
                    for _ in range(3000)})
    lines = hosts + ["10.90.0.0/16", "10.90.3.0/24", "10.90.3.7/32", "2001:db8:66::/48"]
    p = pol.from_dict({"default": "allow", "sets": {"bl": lines},
                       "rules": [{"name": "bl", "match": {"src_set": "bl"}, "action": "drop"}]})
    old = sets.parse_lines(lines, "bl")
    dp.ap.apply(comp.compile_policy(p, {"bl": old}, dp.f.sizes, dp.ap.classes))
    drop = (XDP_DROP, Reason.RULE, Verdict.DROP)
    allow = (XDP_PASS, Reason.DEFAULT, Verdict.PASS)
    assert outcome(dp, fr.udp(src=hosts[7].split("/")[0])) == drop
    assert outcome(dp, fr.udp(src="10.90.200.1")) == drop

    add = sets.parse_lines(["10.77.1.5/32", "10.78.0.0/24", "2001:db8:77::5/128"], "bl")
    gone = sets.parse_lines([hosts[7], "10.90.0.0/16"], "bl")
    cur = old
    for step, (a, g) in enumerate([(add, gone), (sets.parse_lines(["10.79.0.1/32"], "bl"), [])]):
        new = [x for x in cur if x not in g] + a
        w = comp.compile_policy(p, {"bl": new}, dp.f.sizes, dp.ap.classes, prev=dp.ap.last,
                                hints={"bl": (cur, a, g)})
        assert w.lpm_touched is not None and len(w.lpm_touched) < 10  # the edit, not the set
        dp.ap.apply(w)
        full = comp.compile_policy(p, {"bl": new}, dp.f.sizes)
        bank = dp.ap.active_bank()
        back = dp.ap.read_bank(bank)
        assert back.lpm == full.lpm and len(back.lpm) == len(new)
        table, bases = addr4.build(full.lpm.items())
        assert back.bases4 == bases
        words = dp.maps["addr4"].words(bank * layout.A4_WORDS, layout.A4_WORDS)
        assert (words == table.view("uint64")).all(), f"step {step}: IPv4 table"
        cur = new
    assert outcome(dp, fr.udp(src="10.77.1.5")) == drop
    assert outcome(dp, fr.udp(src="10.78.0.200")) == drop
    assert outcome(dp, fr.udp(src="10.79.0.1")) == drop
    assert outcome(dp, fr.udp(src="2001:db8:77::5", dst=fr.S6)) == drop
    assert outcome(dp, fr.udp(src="2001:db8:66::9", dst=fr.S6)) == drop
    assert outcome(dp, fr.udp(src=hosts[7].split("/")[0], sport=40001)) == allow
    assert outcome(dp, fr.udp(src="10.90.200.2")) == allow  # the /16 went
    assert outcome(dp, fr.udp(src="10.90.3.9")) == drop  # its /24 stays


def test_after_a_big_blocklist_is_loaded_the_standby_bank_catches_up_and_the_first_edit_writes_only_itself(dp):
    """A 12,000-entry blocklist loaded from scratch lands in one bank; the other still holds
    the policy before it, so the first edit would write every prefix again. Brought up to
    the running policy in the background (nothing flips, the running policy is untouched),
    the standby bank then takes the first edit as a write of the edit alone, and that edit
    is enforced: IPv4 table, IPv6 hint and prefixes as the catch-up left them."""
    import random

    from xdpgate.control import apply as ap_mod, compile as comp, layout, policy as pol, sets

    rnd = random.Random(9)
    hosts = sorted({f"10.{rnd.randrange(100, 120)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}/32"
                    for _ in range(12000)})
    lines = hosts + ["2001:db8:99::/48", "10.250.0.0/16"]
    p = pol.from_dict({"default": "allow", "sets": {"bl": lines},
                       "rules": [{"name": "bl", "match": {"src_set": "bl"}, "action": "drop"}]})
    old = sets.parse_lines(lines, "bl")
    assert len(old) >= ap_mod.CATCH_UP_MIN
    dp.ap.apply(comp.compile_policy(p, {"bl": old}, dp.f.sizes, dp.ap.classes))
    drop = (XDP_DROP, Reason.RULE, Verdict.DROP)
    gen, active = dp.ap.gen, dp.ap.active_bank()
    assert dp.ap.needs_catch_up()

    assert dp.ap.catch_up()
    assert (dp.ap.gen, dp.ap.active_bank()) == (gen, active)
    assert outcome(dp, fr.udp(src=hosts[3].split("/")[0])) == drop
    standby = active ^ 1
    back, run = dp.ap.read_bank(standby), dp.ap.read_bank(active)
    for f in ("header", "rules", "fieldbits", "portbits", "addrclass", "lpm", "bases4"):
        assert getattr(back, f) == getattr(run, f), f
    words = dp.maps["addr4"].words
    assert (words(standby * layout.A4_WORDS, layout.A4_WORDS)
            == words(active * layout.A4_WORDS, layout.A4_WORDS)).all()
    assert not dp.ap.needs_catch_up() and not dp.ap.catch_up()  # once is enough

    written = []
    for name in ("pfx4", "lpm6"):
        m = dp.maps[name]
        orig = m.set_many_raw

        def counted(keys, vals, n, orig=orig):
            written.append(n)
            return orig(keys, vals, n)

        m.set_many_raw = counted
    add = sets.parse_lines(["10.77.1.5/32"], "bl")
    w = comp.compile_policy(p, {"bl": old + add}, dp.f.sizes, dp.ap.classes, prev=dp.ap.last,
                            hints={"bl": (old, add, [])})
    dp.ap.apply(w)
    assert dp.ap.active_bank() == standby
    assert sum(written) <= 4, written  # the new prefix (and a base or two), not 12,000
    assert outcome(dp, fr.udp(src="10.77.1.5")) == drop
    assert outcome(dp, fr.udp(src=hosts[-1].split("/")[0], sport=40002)) == drop
    assert outcome(dp, fr.udp(src="10.250.7.7")) == drop
    assert outcome(dp, fr.udp(src="2001:db8:99::7", dst=fr.S6)) == drop
    assert outcome(dp, fr.udp(src="10.251.0.1", sport=40003))[2] == Verdict.PASS
    full = comp.compile_policy(p, {"bl": old + add}, dp.f.sizes)
    assert dp.ap.read_bank(standby).lpm == full.lpm
