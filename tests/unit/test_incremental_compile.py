"""An operator edits big sets a few entries at a time: each compile starts from the last
one (compile_policy's `prev`) and must give exactly what a compile from scratch gives,
while saying which prefixes it touched."""

from __future__ import annotations

import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from xdpgate.control import addrhint, compile as comp, policy as pol
from xdpgate.control.sets import Prefix

NAMES = ("a", "b", "c")


def policy_using(names: list[str]) -> pol.Policy:
    roles = ("src_set", "dst_set", "ip_set")
    rules = [{"name": f"r{i}", "match": {roles[i % 3]: [n]}, "action": "drop"}
             for i, n in enumerate(names)]
    return pol.from_dict({"sets": {n: [] for n in NAMES}, "rules": rules})


def prefix(rnd: random.Random) -> Prefix:
    """Prefixes crowded into a small space so that they nest and repeat."""
    if rnd.random() < 0.7:
        plen = rnd.choice((8, 16, 20, 24, 24, 25, 28, 30, 32, 32))
        net = (0x0A000000 | rnd.getrandbits(18)) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        return (4, net, plen)
    plen = rnd.choice((32, 48, 64, 128))
    top = 0x20010DB8 + rnd.randrange(64)  # some /32s: bits of the IPv6 hint come and go
    net = ((top << 96) | (rnd.getrandbits(40) << 80)) & ((1 << 128) - (1 << (128 - plen)))
    return (6, net, plen)


def edit_one(rnd: random.Random, sets: dict, adds: int = 4, drops: int = 3) -> dict:
    """A random edit of one set in place (up to adds-1 new prefixes, drops-1 gone); returns
    the compile hint saying so."""
    n = rnd.choice(NAMES)
    old = sets[n]
    add = list(dict.fromkeys(p for p in (prefix(rnd) for _ in range(rnd.randrange(adds)))
                             if p not in old))
    drop = rnd.sample(old, min(len(old), rnd.randrange(drops)))
    sets[n] = [p for p in old if p not in drop] + add
    return {n: (old, add, drop)}


def check_step(prev: comp.Wanted, w: comp.Wanted, full: comp.Wanted) -> None:
    assert w.lpm == full.lpm
    assert w.classes == full.classes and w.addrclass == full.addrclass
    assert w.plan.member == full.plan.member and w.plan.count == full.plan.count
    assert w.plan.sorted_keys() == comp.address_plan(w.plan.sets).sorted_keys()
    if w.lpm_touched is not None:
        assert w.lpm_base is prev.lpm
        differ = {k for k in w.lpm.keys() | prev.lpm.keys() if w.lpm.get(k) != prev.lpm.get(k)}
        assert differ <= w.lpm_touched


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_a_compile_from_the_last_one_equals_a_compile_from_scratch(seed, with_hints):
    rnd = random.Random(seed)
    sets = {n: list(dict.fromkeys(prefix(rnd) for _ in range(rnd.randrange(0, 40))))
            for n in NAMES}
    used = ["a", "b"]
    w = comp.compile_policy(policy_using(used), sets)
    incremental = 0
    for _ in range(12):
        before = dict(w.lpm)
        op = rnd.random()
        hints = {}
        if op < 0.15:  # a rule starts or stops using a set
            used = rnd.sample(NAMES, rnd.randrange(0, 4))
        else:
            hints = edit_one(rnd, sets, adds=6, drops=4)
        policy = policy_using(used)
        nxt = comp.compile_policy(policy, dict(sets), prev=w, hints=hints if with_hints else None)
        full = comp.compile_policy(policy, dict(sets), prev_classes=w.classes)
        check_step(w, nxt, full)
        assert w.lpm == before  # the last compile's result is never changed in place
        incremental += nxt.lpm_touched is not None
        w = nxt
    assert incremental  # the steps above are small: most went the incremental way


def test_adding_a_prefix_over_others_gives_them_its_set_and_removing_it_takes_it_back():
    p16, p24, p32 = (4, 0x0A010000, 16), (4, 0x0A010200, 24), (4, 0x0A010203, 32)
    policy = policy_using(["a", "b"])
    sets = {"a": [p24, p32], "b": [], "c": []}
    w0 = comp.compile_policy(policy, sets)
    assert w0.plan.member[p32] == {"a"}
    b = [p16]
    w1 = comp.compile_policy(policy, {**sets, "b": b}, prev=w0,
                             hints={"b": (sets["b"], [p16], [])})
    assert w1.plan.member[p32] == w1.plan.member[p24] == {"a", "b"}
    assert w1.lpm_touched == {p16, p24, p32}
    w2 = comp.compile_policy(policy, sets, prev=w1)  # b back to empty, found by a diff
    assert w2.plan.member[p32] == {"a"} and p16 not in w2.lpm
    assert w2.lpm == w0.lpm and w2.lpm_touched == {p16, p24, p32}


def test_an_edit_of_rules_alone_keeps_the_addresses_as_they_were():
    sets = {"a": [(4, 0x0A000000 + (i << 8), 24) for i in range(500)], "b": [], "c": []}
    w0 = comp.compile_policy(policy_using(["a"]), sets)
    p = policy_using(["a"])
    p.rules.append(pol.from_dict({"rules": [{"name": "x", "match": {"proto": "udp"},
                                             "action": "drop"}]}).rules[0])
    w1 = comp.compile_policy(p, sets, prev=w0)
    assert w1.lpm is w0.lpm and w1.lpm_touched == set()
    assert w1.plan.own is w0.plan.own


def test_a_change_too_big_to_be_worth_an_update_compiles_afresh(monkeypatch):
    monkeypatch.setattr(comp, "INCREMENTAL_MAX", 10)
    sets = {"a": [(4, 0x0A000000 + (i << 8), 24) for i in range(5)], "b": [], "c": []}
    w0 = comp.compile_policy(policy_using(["a"]), sets)
    more = {**sets, "a": sets["a"] + [(4, 0x0B000000 + (i << 8), 24) for i in range(20)]}
    w1 = comp.compile_policy(policy_using(["a"]), more, prev=w0)
    assert w1.lpm_touched is None and w1.lpm_base is None
    assert w1.lpm == comp.compile_policy(policy_using(["a"]), more).lpm


def bank_contents(maps, bank: int) -> tuple:
    """What a bank holds in the address maps: the IPv4 table's non-zero words, the pfx4 and
    lpm6 entries (keys without the bank number)."""
    from xdpgate.control import layout

    words = maps["addr4"].words(bank * layout.A4_WORDS, layout.A4_WORDS)
    nz = words.nonzero()[0]
    pfx4 = {(k.kind, k.len, layout.addr4_of(k)): v.value for k, v in maps["pfx4"].items()
            if k.bank == bank}
    lpm6 = {(k.prefixlen, bytes(k.addr)): v.value for k, v in maps["lpm6"].items()
            if k.bank == bank}
    return dict(zip(nz.tolist(), words[nz].tolist())), pfx4, lpm6


def assert_hint_covers(bank, exact: bytes) -> None:
    """A bank's IPv6 hint holds every bit of the exact one, and no more than its stale
    bits besides (a prefix gone may leave its bits: control/addrhint.py)."""
    h = int.from_bytes(bank.hint, "little")
    x = int.from_bytes(exact, "little")
    assert h & x == x, "the hint hides a member"
    assert bin(h & ~x).count("1") <= bank.hint_stale


def assert_as_fresh(maps, ap, w: comp.Wanted) -> None:
    """The bank `ap` just applied `w` into holds what a fresh apply of `w` gives (its IPv6
    hint may hold stale bits besides)."""
    from tests.unit.fakemaps import fake_mapset
    from xdpgate.control.apply import Applier

    fresh_maps = fake_mapset()
    fresh = Applier(fresh_maps)
    fresh.assume_empty()
    fresh.apply(w)
    assert bank_contents(maps, ap.active_bank()) == bank_contents(fresh_maps, 1)
    assert ap.banks[ap.active_bank()].bases4 == fresh.banks[1].bases4
    assert_hint_covers(ap.banks[ap.active_bank()], addrhint.build(w.lpm))


def empty_banks(rnd: random.Random):
    """Fake maps, an applier that knows both banks empty, and 30 random prefixes a set."""
    from tests.unit.fakemaps import fake_mapset
    from xdpgate.control.apply import Applier

    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    return maps, ap, {n: list(dict.fromkeys(prefix(rnd) for _ in range(30))) for n in NAMES}


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32))
def test_applies_of_set_edits_leave_each_bank_as_a_fresh_apply_would(seed):
    rnd = random.Random(seed)
    maps, ap, sets = empty_banks(rnd)
    used = ["a", "b", "c"]
    ap.apply(comp.compile_policy(policy_using(used), dict(sets), maps.sizes))
    fast = 0
    for step in range(8):
        hints = edit_one(rnd, sets)
        if step == 5:
            used = ["a", "c"]
        w = comp.compile_policy(policy_using(used), dict(sets), maps.sizes, prev=ap.last,
                                hints=hints)
        fast += w.lpm_touched is not None
        ap.apply(w)
        assert_as_fresh(maps, ap, w)
    assert fast


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32))
def test_a_standby_bank_caught_up_between_applies_holds_the_running_policy_and_later_ones(seed):
    """Fresh compiles and set edits, with the standby bank brought up to the running policy
    now and then (Applier.catch_up): it then holds what the active bank holds, and every
    later apply still leaves its bank as a fresh apply would."""
    from xdpgate.control import apply as ap_mod

    rnd = random.Random(seed)
    maps, ap, sets = empty_banks(rnd)
    used = ["a", "b", "c"]
    wrote = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ap_mod, "CATCH_UP_MIN", 1)
        for _ in range(10):
            hints = edit_one(rnd, sets)
            fresh_compile = rnd.random() < 0.3
            w = comp.compile_policy(policy_using(used), dict(sets), maps.sizes,
                                    prev=None if fresh_compile else ap.last,
                                    hints=None if fresh_compile else hints)
            ap.apply(w)
            assert_as_fresh(maps, ap, w)
            act = ap.active_bank()
            if rnd.random() < 0.6 and ap.catch_up():
                wrote += 1
                assert ap.active_bank() == act and not ap.needs_catch_up()  # nothing flipped
                assert bank_contents(maps, act ^ 1) == bank_contents(maps, act)
                assert ap.banks[act ^ 1].bases4 == ap.banks[act].bases4
                assert ap.banks[act ^ 1].hint == ap.banks[act].hint
    assert wrote


def test_after_a_restart_the_bank_not_known_is_read_back_and_caught_up(monkeypatch):
    """A controller that adopted running maps knows neither bank; after its first apply the
    other one is read back and brought up to the running policy."""
    from xdpgate.control import apply as ap_mod
    from xdpgate.control.apply import Applier

    monkeypatch.setattr(ap_mod, "CATCH_UP_MIN", 1)
    rnd = random.Random(3)
    maps, before, sets = empty_banks(rnd)
    for _ in range(2):  # both banks hold something
        before.apply(comp.compile_policy(policy_using(["a", "b"]), dict(sets), maps.sizes))
        edit_one(rnd, sets)
    ap = Applier(maps)  # the restarted controller
    w = comp.compile_policy(policy_using(["b", "c"]), dict(sets), maps.sizes)
    ap.apply(w)
    act = ap.active_bank()
    assert ap.banks[act ^ 1] is None and ap.needs_catch_up()
    assert ap.catch_up() and not ap.needs_catch_up()
    assert bank_contents(maps, act ^ 1) == bank_contents(maps, act)
    assert ap.banks[act ^ 1].lpm is w.lpm
