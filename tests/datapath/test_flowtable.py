"""The flow table is set-associative: a flow's hash picks two sets of eight entries, a new
flow takes an empty one or the longest unseen of the sixteen, and the controller finds
flows by key with the same hash (control/flowtable.py)."""

from __future__ import annotations

import ctypes as ct
import random
import time

from tests.datapath import frames as fr
from tests.datapath.frames import dp, module_dp  # noqa: F401
from tests.harness import XDP_DROP, XDP_PASS, set_way_seen, way_seen
from xdpgate.control import flowtable, layout
from xdpgate.control.layout import Event

U, T = fr.udp, fr.tcp
TICK_S = 0.012  # longer than a jiffy (4 ms at HZ=250) and ten way-age units


def key_with_client_port(d, client: str, server: str, dport: int):
    """The key the data path made for a first UDP packet from client:40000, and which of its
    port fields is the client's."""
    d.run(U(client, server, 40000, dport))
    (key, f), = d.flows()
    d.clear("flows")
    return key, ("port_a" if f.init_is_a else "port_b")


def sets_of(d, key) -> tuple[int, int]:
    """A key's first and second set."""
    ft = d.maps.flowtable
    return flowtable.place(flowtable.flow_hash(key, ft.seed), ft.nsets)[:2]


def homed_at(d, key, field: str, want: dict[int, int]) -> dict[int, list[tuple[int, int]]]:
    """For each set of `want`, that many (client port, server port) pairs whose flows (key
    with those ports; `field` is the client's) have it as their first set."""
    other = "port_b" if field == "port_a" else "port_a"
    k = layout.FlowKey.from_buffer_copy(bytes(key))
    found: dict[int, list[tuple[int, int]]] = {si: [] for si in want}
    rnd = random.Random(7)
    taken = {(fr.htons(getattr(key, field)), fr.htons(getattr(key, other)))}
    while any(len(found[si]) < n for si, n in want.items()):
        ports = rnd.randrange(1024, 65536), rnd.randrange(1, 1024)
        if ports in taken:
            continue
        setattr(k, field, fr.htons(ports[0]))
        setattr(k, other, fr.htons(ports[1]))
        si = sets_of(d, k)[0]
        if si in found and len(found[si]) < want[si]:
            found[si].append(ports)
            taken.add(ports)
    return found


def listed_ports(d, field: str) -> list[tuple[int, int]]:
    other = "port_b" if field == "port_a" else "port_a"
    return sorted((fr.htons(getattr(k, field)), fr.htons(getattr(k, other))) for k, _ in d.flows())


def test_the_controller_finds_every_flow_the_data_path_added_by_its_key(dp):
    rnd = random.Random(3)
    sent = set()
    for i in range(300):
        v6 = i % 3 == 0
        src = f"2001:db8:{rnd.randrange(1, 9999):x}::{rnd.randrange(1, 9999):x}" if v6 else \
            f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        dst = fr.S6 if v6 else fr.S4
        sport, dport = rnd.randrange(1024, 65536), rnd.choice((53, 443, 5060))
        frame = (T if i % 2 else U)(src, dst, sport, dport)
        assert dp.run(frame) == XDP_PASS
        sent.add((src, sport, dport))
    ft = dp.maps.flowtable
    assert ft.seed != 0, "the loader seeds the flow hash"
    flows = dp.flows()
    assert len(flows) == len(ft) == len(sent) == dp.events()[Event.FLOW_NEW]
    for key, f in flows:
        found = ft.get(key)
        assert found is not None, "a flow the data path added is not where the hash says"
        assert bytes(found) == bytes(f)
    gone = flows[0][0]
    assert ft.delete(gone) and ft.get(gone) is None and len(ft) == len(sent) - 1


def test_a_flow_whose_first_set_is_full_of_live_flows_takes_its_second_and_replaces_none(dp):
    key, field = key_with_client_port(dp, fr.C4, fr.S4, 53)  # the flow 40000 -> 53
    first, _ = sets_of(dp, key)
    live = homed_at(dp, key, field, {first: 8})[first]
    new0 = dp.events()[Event.FLOW_NEW]
    for cp, sp in live:
        dp.run(U(fr.C4, fr.S4, cp, sp))
    assert dp.events()[Event.FLOW_EVICTED] == 0
    assert dp.run(U(fr.C4, fr.S4, 40000, 53)) == XDP_PASS
    ev = dp.events()
    assert (ev[Event.FLOW_NEW] - new0, ev[Event.FLOW_EVICTED]) == (9, 0), \
        "a live flow was replaced"
    assert listed_ports(dp, field) == sorted(live + [(40000, 53)])
    dp.run(U(fr.S4, fr.C4, 53, 40000))  # its reply finds it in its second set
    assert dp.events()[Event.FLOW_NEW] - new0 == 9
    f = dp.maps.flowtable.get(key)
    assert f is not None and (f.pkts[0], f.pkts[1]) == (1, 1)


def test_a_new_flow_takes_the_longest_unseen_entry_of_its_two_full_sets(dp):
    key, field = key_with_client_port(dp, fr.C4, fr.S4, 53)
    first, second = sets_of(dp, key)
    assert first != second
    homes = homed_at(dp, key, field, {first: 8, second: 8})
    older, newer = homes[second], homes[first]
    new0 = dp.events()[Event.FLOW_NEW]
    for cp, sp in older + newer:  # one flow per tick: older[0] is the oldest of the sixteen
        dp.run(U(fr.C4, fr.S4, cp, sp))
        time.sleep(TICK_S)
    dp.run(U(fr.S4, fr.C4, older[0][1], older[0][0]))  # a reply: older[1] is now the oldest
    time.sleep(TICK_S)
    assert dp.events()[Event.FLOW_EVICTED] == 0
    dp.run(U(fr.C4, fr.S4, 40000, 53))
    ev = dp.events()
    assert (ev[Event.FLOW_NEW] - new0, ev[Event.FLOW_EVICTED]) == (17, 1)
    assert listed_ports(dp, field) == sorted(older[:1] + older[2:] + newer + [(40000, 53)]), \
        "not the longest unseen flow of the two sets was replaced"
    (f0,) = [f for k, f in dp.flows() if fr.htons(getattr(k, field)) == older[0][0]]
    assert (f0.pkts[0], f0.pkts[1]) == (1, 1), "the surviving flow kept its counts"


def test_a_new_flow_whose_sets_are_busy_on_every_way_is_still_decided_by_the_policy(dp):
    dp.apply("""
default: allow
rules:
  - {name: no-sip, match: {proto: udp, dst_port: 5060}, action: drop}
""")
    key, _ = key_with_client_port(dp, fr.C4, fr.S4, 5060)
    new0 = dp.events()[Event.FLOW_NEW]
    ft = dp.maps.flowtable
    busy = layout.FlowSet()
    for w in range(layout.FLOW_WAYS):  # as if other CPUs were writing every way of both sets
        busy.way[w] = layout.WAY_BUSY
    for si in sets_of(dp, key):
        ft.sets.set(ct.c_uint32(si), busy)
    assert dp.run(U(fr.C4, fr.S4, 40000, 5060)) == XDP_DROP
    ev = dp.events()
    assert (ev[Event.FLOW_NOSLOT], ev[Event.FLOW_NEW] - new0) == (1, 0) and ft.get(key) is None
    ft.sets.set(ct.c_uint32(sets_of(dp, key)[1]), layout.FlowSet())  # one set's writers are done
    assert dp.run(U(fr.C4, fr.S4, 40000, 5060)) == XDP_DROP
    assert ft.get(key) is not None, "once a way is free, the flow gets its entry"


def test_flows_added_by_the_controller_are_the_ones_the_data_path_then_finds(dp):
    """set_many (the benchmarks' prefill) places entries exactly as the data path looks,
    also where a crowded first set sends flows to their second."""
    key, field = key_with_client_port(dp, fr.C6, fr.S6, 443)
    first, _ = sets_of(dp, key)
    crowd = homed_at(dp, key, field, {first: 12})[first]
    ports = [(p, 443) for p in range(20000, 20200)] + crowd
    other = "port_b" if field == "port_a" else "port_a"
    keys, vals = [], []
    for cp, sp in ports:
        k = layout.FlowKey.from_buffer_copy(bytes(key))
        setattr(k, field, fr.htons(cp))
        setattr(k, other, fr.htons(sp))
        keys.append(k)
        vals.append(layout.Flow(init_is_a=1 if field == "port_a" else 0, pkts=(5, 0),
                                override=layout.Action.NONE,
                                action=(layout.Action.NONE, layout.Action.NONE)))
    assert dp.maps.flowtable.set_many(keys, vals) == 0, "a flow lost its place"
    new0 = dp.events()[Event.FLOW_NEW]
    for cp, sp in ports:
        dp.run(U(fr.C6, fr.S6, cp, sp))
    ev = dp.events()
    assert ev[Event.FLOW_NEW] == new0, "the data path did not find a flow the controller added"
    assert sorted(f.pkts[0] for _, f in dp.flows()) == [6] * len(ports)


def test_listing_a_big_table_answers_as_a_walk_through_every_entry_would(dp):
    """`xdpgate flows` filters and ranks the table as arrays (observe.flows); here 40,000
    flows are listed by bytes, by port, by address range and by verdict, and compared with
    the same filters applied entry by entry."""
    from xdpgate.control import observe
    from xdpgate.control.maps import addr16

    rnd = random.Random(9)
    keys, vals = [], []
    for i in range(40000):
        k = layout.FlowKey(proto=rnd.choice((6, 17)), port_a=fr.htons(rnd.randrange(1, 2000)),
                           port_b=fr.htons(rnd.choice((53, 443, 5060))))
        a = addr16(f"10.{i >> 8 & 255}.{i & 255}.1") if i % 4 else addr16(f"2001:db8::{i:x}")
        k.addr_a[:] = a
        k.addr_b[:] = addr16("192.0.2.1") if i % 4 else addr16("2001:db8:ffff::1")
        keys.append(k)
        vals.append(layout.Flow(init_is_a=1, pkts=(1, 1), bytes=(rnd.randrange(10**9), 0),
                                override=rnd.choice((layout.Action.NONE, layout.Action.DROP)),
                                action=(layout.Action.ALLOW, layout.Action.NONE)))
    dp.maps.flowtable.set_many(keys, vals)
    entries = dp.flows()
    assert len(entries) > 39000  # a few may lose their place in a full set

    def walk(pred, limit):
        hits = sorted((f.bytes[0] + f.bytes[1] for k, f in entries if pred(k, f)), reverse=True)
        return hits[:limit]

    def listed(**filters):
        return [r["bytes_fwd"] + r["bytes_rev"] for r in observe.flows(dp.maps, **filters)]

    assert listed(limit=20) == walk(lambda k, f: True, 20)
    assert listed(port=1234, limit=500) == walk(
        lambda k, f: 1234 in (fr.htons(k.port_a), fr.htons(k.port_b)), 500)
    lo, hi = addr16("10.6.0.0"), addr16("10.7.255.255")
    assert listed(ip="10.6.0.0/15", limit=10**6) == walk(
        lambda k, f: lo <= bytes(k.addr_a) <= hi, 10**6)
    assert listed(verdict="drop", limit=50) == walk(
        lambda k, f: f.override == layout.Action.DROP, 50)


def test_listing_by_age_idle_time_and_packets_puts_the_oldest_the_most_idle_and_the_busiest_first(dp):
    from xdpgate.control import observe
    from xdpgate.control.maps import addr16

    now = dp.now_ns()
    keys, vals = [], []
    for i in range(50):
        k = layout.FlowKey(proto=17, port_a=fr.htons(1000 + i), port_b=fr.htons(53))
        k.addr_a[:] = addr16("10.0.0.1")
        k.addr_b[:] = addr16("192.0.2.1")
        keys.append(k)
        # first seen i*3 s ago, last seen (i*7 % 50) s ago, (i*11 % 50) + 1 packets
        vals.append(layout.Flow(init_is_a=1, pkts=((i * 11) % 50 + 1, 0), bytes=(100, 0),
                                first_ns=now - i * 3 * 10**9, last_ns=now - (i * 7 % 50) * 10**9))
    dp.maps.flowtable.set_many(keys, vals)

    def top(sort):
        return [r[{"age": "age_s", "idle": "idle_s", "packets": "pkts_fwd"}[sort]]
                for r in observe.flows(dp.maps, sort=sort, limit=5)]

    assert [round(a) for a in top("age")] == [147, 144, 141, 138, 135]
    assert [round(a) for a in top("idle")] == [49, 48, 47, 46, 45]
    assert top("packets") == [50, 49, 48, 47, 46]


def test_a_flow_unseen_for_weeks_stays_the_oldest_however_long_it_stays_unseen(dp):
    """A way's seen time is 32 bits of a ~1 ms clock: left alone, a flow unseen for ~52 days
    would look just seen and outlive live flows. The controller sets ways unseen for over
    ~26 days back to that age (hourly); swept this way, the flow never looks younger."""
    dp.run(U(fr.C4, fr.S4, 40001, 53))
    dp.run(U(fr.C4, fr.S4, 40002, 53))
    ft = dp.maps.flowtable
    (stale, _), (fresh, _) = sorted(dp.flows(), key=lambda kf: bytes(kf[0]))
    now = flowtable.seen_now()

    def tag(key) -> int:
        _, w, fs = ft.find(key)
        return fs.way[w] & 0xFFFFFFFF

    set_way_seen(dp.maps, stale, (now - flowtable.AGE_CAP - 1000) & 0xFFFFFFFF)
    tags = tag(stale), tag(fresh)
    step = 1 << 30  # about 13 days between sweeps (they run hourly)
    for k in range(6):  # unseen from 26 to 91 days: past the 52 where the clock wraps
        t = (now + k * step) & 0xFFFFFFFF
        set_way_seen(dp.maps, fresh, (t - 5) & 0xFFFFFFFF)  # its packets keep coming
        assert ft.cap_ages(t) == 1
        age = (t - way_seen(dp.maps, stale)) & 0xFFFFFFFF
        assert age == flowtable.AGE_CAP, f"after {k} sweeps the flow looks {age} units old"
        assert way_seen(dp.maps, fresh) == (t - 5) & 0xFFFFFFFF, "a flow seen lately is left alone"
    assert (tag(stale), tag(fresh)) == tags
    assert len(ft) == 2, "empty ways stay empty"
