"""The IPv4 address table: every address gets the class of its longest matching prefix,
and an apply writes only what changes (the data path's side: tests/datapath/
test_policy_match.py)."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.fakemaps import apply_set, fake_mapset
from xdpgate.control import addr4, layout
from xdpgate.control.apply import Applier


def lpm_of(pairs: list[tuple[str, int]]) -> dict[tuple[int, int, int], int]:
    out = {}
    for text, cid in pairs:
        n = ipaddress.ip_network(text)
        out[(n.version, int(n.network_address), n.prefixlen)] = cid
    return out


def longest(lpm: dict, addr: int) -> int:
    """The reference: the class of the longest prefix holding `addr`, by brute force."""
    best, cls = -1, 0
    for (ver, net, plen), cid in lpm.items():
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if ver == 4 and addr & mask == net and plen > best:
            best, cls = plen, cid
    return cls


def class_of(table, bases: dict[int, int], lpm: dict, addr: int) -> int:
    """What the data path (bpf/xdpgate.c, the IPv4 address lookup) finds for `addr`: the
    /24's entry, or for a spilled /24 the longest present length whose prefix is in
    `lpm`, else the /24's base class."""
    e = int(table[addr >> 8])
    if not e & layout.A4_SPILL:
        return e
    for plen in range(32, 24, -1):
        if e & (1 << (plen - 25)):
            net = addr & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            if (4, net, plen) in lpm:
                return lpm[(4, net, plen)]
    return bases.get(addr >> 8, 0)


def a4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def test_nested_prefixes_resolve_to_the_longest_one():
    lpm = lpm_of([("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/24", 3),
                  ("10.1.2.128/25", 4), ("10.1.2.200/32", 5), ("10.9.9.9/32", 6),
                  ("2001:db8::/32", 7)])
    table, bases = addr4.build(lpm.items())
    for text, want in [("10.200.0.1", 1), ("10.1.77.1", 2), ("10.1.2.1", 3),
                       ("10.1.2.129", 4), ("10.1.2.200", 5), ("10.9.9.9", 6),
                       ("10.9.9.8", 1), ("11.0.0.0", 0), ("9.255.255.255", 0)]:
        assert class_of(table, bases, lpm, a4(text)) == want, text
    # the two /24s with longer prefixes are spilled, with the lengths they hold
    assert table[a4("10.1.2.0") >> 8] == layout.A4_SPILL | 1 << 0 | 1 << 7
    assert table[a4("10.9.9.0") >> 8] == layout.A4_SPILL | 1 << 7
    assert bases == {a4("10.1.2.0") >> 8: 3, a4("10.9.9.0") >> 8: 1}


def test_a_long_prefix_alone_in_its_24_needs_no_base():
    lpm = lpm_of([("192.0.2.16/28", 9)])
    table, bases = addr4.build(lpm.items())
    assert bases == {}
    assert class_of(table, bases, lpm, a4("192.0.2.20")) == 9
    assert class_of(table, bases, lpm, a4("192.0.2.40")) == 0
    assert int((table != 0).sum()) == 1


def test_the_default_route_covers_every_24():
    table, bases = addr4.build(lpm_of([("0.0.0.0/0", 3)]).items())
    assert int((table == 3).sum()) == addr4.SLOTS and bases == {}


prefixes = st.lists(st.tuples(st.integers(0, 2 ** 32 - 1), st.integers(8, 32),
                              st.integers(1, 40)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(prefixes, st.randoms(use_true_random=False))
def test_any_prefixes_give_the_longest_match_for_addresses_in_and_around_them(ps, rnd):
    lpm = {}
    for addr, plen, cid in ps:
        # crowd them into a few /16s so that they nest
        addr = (0x0A000000 | (addr & 0x0003FFFF)) & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        lpm[(4, addr, plen)] = cid
    table, bases = addr4.build(lpm.items())
    for (_, net, plen) in list(lpm):
        size = 1 << (32 - plen)
        for a in (net, net + size - 1, net + rnd.randrange(size), net - 1, net + size):
            a &= 0xFFFFFFFF
            assert class_of(table, bases, lpm, a) == longest(lpm, a), hex(a)


def applied(ap: Applier, maps, prefixes: list[str]) -> tuple[int, int]:
    """Apply a one-rule policy over a set of these prefixes; returns (table words written,
    pfx4 writes)."""
    return apply_set(ap, maps, prefixes, "addr4", "pfx4")


def bank_words(maps, bank: int):
    return maps["addr4"].words(bank * layout.A4_WORDS, layout.A4_WORDS)


def test_an_apply_writes_the_words_that_differ_and_keeps_bases_in_step():
    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    first = ["10.1.0.0/16", "10.1.2.200/32"]
    assert applied(ap, maps, first) == (64, 3)  # 256 /24s in 64 words; 2 prefixes + 1 base
    b1 = ap.active_bank()
    assert applied(ap, maps, first) == (64, 3)  # the other bank starts empty
    assert applied(ap, maps, first) == (0, 0)  # same again: nothing to write
    # the /32 goes: its /24 is no longer spilled and its base entry is deleted
    assert applied(ap, maps, first[:1]) == (1, 0)
    base_keys = [k for k in maps["pfx4"].keys()
                 if k.bank == ap.active_bank() and k.kind == layout.PFX_BASE]
    assert base_keys == []
    # the bank read back from the maps is what was written
    back = ap.read_bank(b1)
    assert back.lpm == ap.banks[b1].lpm and back.bases4 == ap.banks[b1].bases4


def test_a_failed_apply_leaves_the_running_table_and_the_next_one_repairs_its_bank():
    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    applied(ap, maps, ["10.1.0.0/16"])
    running = ap.active_bank()
    before = bank_words(maps, running)
    rnd = random.Random(7)
    many = [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}/32"
            for _ in range(50)]
    maps["pfx4"].fail_after = maps["pfx4"].writes + 10
    try:
        applied(ap, maps, many)
    except Exception:
        pass
    else:
        raise AssertionError("the apply should have failed")
    assert ap.active_bank() == running
    assert (bank_words(maps, running) == before).all()
    maps["pfx4"].fail_after = None
    applied(ap, maps, many)
    table, bases = addr4.build(ap.banks[ap.active_bank()].lpm.items())
    assert (bank_words(maps, ap.active_bank()) == table.view("uint64")).all()
