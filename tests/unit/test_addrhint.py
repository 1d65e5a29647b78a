"""The IPv6 address hint: which slots a prefix sets, and that an apply writes only the
words that change (the data path's side is tested in tests/datapath/test_policy_match.py)."""

from __future__ import annotations

import ipaddress

from tests.unit.fakemaps import apply_set, fake_mapset
from xdpgate.control import addrhint, layout
from xdpgate.control.apply import Applier


def pfx(text: str) -> tuple[int, int, int]:
    n = ipaddress.ip_network(text)
    return n.version, int(n.network_address), n.prefixlen


def bit(hint: bytes, slot: int) -> bool:
    return bool(hint[slot >> 3] >> (slot & 7) & 1)


def ones(hint: bytes) -> int:
    return sum(bin(b).count("1") for b in hint)


def a6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_ipv6_prefixes_set_the_hashed_slot_of_each_32_they_touch():
    h = addrhint.build([pfx("2001:db8:5::9/128"), pfx("2001:db8:77::/48")])
    assert bit(h, addrhint.slot6(a6("2001:db8:ffff::1")))  # the same /32
    assert ones(h) == 1
    wide = addrhint.build([pfx("2a00:1000::/20")])
    assert bit(wide, addrhint.slot6(a6("2a00:1fff::1")))
    assert ones(wide) <= 1 << 12


def test_a_prefix_too_wide_to_expand_saturates_the_hint_and_ipv4_ones_leave_it_alone():
    assert addrhint.build([pfx("2000::/8")]) == b"\xff" * addrhint.SIZE
    assert addrhint.build([pfx("10.0.0.0/8"), pfx("0.0.0.0/0")]) == bytes(addrhint.SIZE)


def test_changed_words_are_exactly_the_differing_ones():
    old = addrhint.build([pfx("2001:db8::/32")])
    new = addrhint.build([pfx("2001:db8::/32"), pfx("2001:db9::/32"), pfx("2a00:1::/32")])
    idx, val = addrhint.changed_words(old, new)
    words = memoryview(bytes(new)).cast("Q")
    assert list(idx) == sorted(idx) and len(idx) == 2
    assert all(words[i] == v for i, v in zip(idx, val))
    assert addrhint.changed_words(new, new) == (type(idx)("I"), type(val)("Q"))
    full_idx, _ = addrhint.changed_words(None, new)
    assert len(full_idx) == layout.HINT_WORDS


def applied(ap: Applier, maps, prefixes: list[str]) -> int:
    """Apply a one-rule policy over a set of these prefixes; returns hint words written."""
    return apply_set(ap, maps, prefixes, "addrhint")[0]


def hint_of_bank(maps, bank: int) -> bytes:
    out = bytearray(addrhint.SIZE)
    base = bank * layout.HINT_WORDS
    for k, v in maps["addrhint"].items():
        if base <= k.value < base + layout.HINT_WORDS:
            i = k.value - base
            out[i * 8:i * 8 + 8] = int(v.value).to_bytes(8, "little")
    return bytes(out)


def test_apply_writes_only_the_words_that_change_and_rebuilds_when_prefixes_go():
    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    two = ["2001:db8::/32", "2a00:1::/32", "10.1.0.0/16"]
    want = addrhint.build([pfx(t) for t in two])
    n = len(addrhint.changed_words(bytes(addrhint.SIZE), want)[0])
    assert n in (1, 2) and ones(want) == 2
    assert applied(ap, maps, two) == n
    bank = ap.active_bank()
    assert hint_of_bank(maps, bank) == want
    assert applied(ap, maps, two) == n  # the other bank, empty
    assert applied(ap, maps, two) == 0  # same prefixes again
    # a prefix gone leaves its bit (the trie answers for it): nothing written, one stale bit
    assert applied(ap, maps, two[:1]) == 0
    assert hint_of_bank(maps, ap.active_bank()) == want
    assert ap.banks[ap.active_bank()].hint_stale == 1


def test_stale_bits_past_the_limit_make_the_hint_rebuilt_exact(monkeypatch):
    """Removals leave bits set until their count passes addrhint.STALE_MAX; the apply that
    passes it rebuilds the bank's hint from the prefixes left."""
    monkeypatch.setattr(addrhint, "STALE_MAX", 2)
    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    three = ["2001:db8::/32", "2a00:1::/32", "2c0f:f00::/32"]
    for _ in range(2):  # both banks
        applied(ap, maps, three)
    for _ in range(2):
        applied(ap, maps, three[:1])
        assert hint_of_bank(maps, ap.active_bank()) == addrhint.build([pfx(t) for t in three])
        assert ap.banks[ap.active_bank()].hint_stale == 2
    assert applied(ap, maps, []) >= 1  # a third bit gone: past the limit
    assert hint_of_bank(maps, ap.active_bank()) == bytes(addrhint.SIZE)
    assert ap.banks[ap.active_bank()].hint_stale == 0
    assert addrhint.weight([pfx("2001::/20"), pfx("10.0.0.0/8")]) == 4096
    assert addrhint.weight([pfx("2000::/8")]) == addrhint.SIZE * 8
