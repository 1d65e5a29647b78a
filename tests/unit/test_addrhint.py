"""The address hint: which slots a prefix sets, and that an apply writes only the words
that change (the data path's side is tested in tests/datapath/test_policy_match.py)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.unit.fakemaps import fake_mapset
from xdpgate.control import addrhint, layout
from xdpgate.control import compile as comp
from xdpgate.control import policy as pol
from xdpgate.control import sets
from xdpgate.control.apply import Applier

FB = addrhint.FAMILY_BYTES


def pfx(text: str) -> tuple[int, int, int]:
    n = ipaddress.ip_network(text)
    return n.version, int(n.network_address), n.prefixlen


def bit(hint: bytes, v6: bool, slot: int) -> bool:
    base = FB if v6 else 0
    return bool(hint[base + (slot >> 3)] >> (slot & 7) & 1)


def ones(hint: bytes) -> int:
    return sum(bin(b).count("1") for b in hint)


def a4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def a6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_a_host_route_and_a_longer_prefix_set_the_bit_of_their_24():
    h = addrhint.build([pfx("198.51.100.7/32"), pfx("198.51.100.128/25")])
    assert bit(h, False, addrhint.slot4(a4("198.51.100.200")))
    assert ones(h) == 1


@pytest.mark.parametrize("text,slots", [("10.0.0.0/8", 1 << 16), ("10.4.0.0/22", 4),
                                        ("10.4.6.0/23", 2), ("0.0.0.0/0", 1 << 24)])
def test_a_shorter_prefix_sets_every_24_under_it_and_nothing_else(text, slots):
    h = addrhint.build([pfx(text)])
    assert ones(h) == slots
    net = ipaddress.ip_network(text)
    assert bit(h, False, addrhint.slot4(int(net.network_address)))
    assert bit(h, False, addrhint.slot4(int(net.broadcast_address)))
    if net.prefixlen:
        assert not bit(h, False, addrhint.slot4(int(net.broadcast_address) + 1))


def test_ipv6_prefixes_set_the_hashed_slot_of_each_32_they_touch():
    h = addrhint.build([pfx("2001:db8:5::9/128"), pfx("2001:db8:77::/48")])
    assert bit(h, True, addrhint.slot6(a6("2001:db8:ffff::1")))  # the same /32
    assert ones(h[FB:]) == 1 and ones(h[:FB]) == 0
    wide = addrhint.build([pfx("2a00:1000::/20")])
    assert bit(wide, True, addrhint.slot6(a6("2a00:1fff::1")))
    assert ones(wide) <= 1 << 12


def test_an_ipv6_prefix_too_wide_to_expand_saturates_the_ipv6_half_only():
    h = addrhint.build([pfx("2000::/8")])
    assert h[FB:] == b"\xff" * FB and h[:FB] == bytes(FB)


def test_changed_words_are_exactly_the_differing_ones():
    old = addrhint.build([pfx("10.0.0.0/24")])
    new = addrhint.build([pfx("10.0.0.0/24"), pfx("10.0.64.0/24"), pfx("2001:db8::/32")])
    idx, val = addrhint.changed_words(old, new)
    words = memoryview(bytes(new)).cast("Q")
    assert list(idx) == sorted(idx) and len(idx) == 2
    assert all(words[i] == v for i, v in zip(idx, val))
    assert addrhint.changed_words(new, new) == (type(idx)("I"), type(val)("Q"))
    full_idx, _ = addrhint.changed_words(None, new)
    assert len(full_idx) == 2 * layout.HINT_WORDS


def applied(ap: Applier, maps, prefixes: list[str]) -> int:
    """Apply a one-rule policy over a set of these prefixes; returns hint words written."""
    p = pol.from_dict({"default": "allow", "sets": {"s": prefixes},
                       "rules": [{"name": "r", "match": {"src_set": "s"}, "action": "drop"}]})
    w = comp.compile_policy(p, {"s": sets.parse_lines(prefixes, "s")}, maps.sizes, ap.classes)
    before = maps["addrhint"].writes
    ap.apply(w)
    return maps["addrhint"].writes - before


def hint_of_bank(maps, bank: int) -> bytes:
    out = bytearray(addrhint.SIZE)
    base = bank * 2 * layout.HINT_WORDS
    for k, v in maps["addrhint"].items():
        if base <= k.value < base + 2 * layout.HINT_WORDS:
            i = k.value - base
            out[i * 8:i * 8 + 8] = int(v.value).to_bytes(8, "little")
    return bytes(out)


def test_apply_writes_only_the_words_that_change_and_rebuilds_when_prefixes_go():
    maps = fake_mapset()
    ap = Applier(maps)
    ap.assume_empty()
    assert applied(ap, maps, ["10.0.0.0/24", "10.1.0.0/16"]) == 5  # 1 + 256 slots / 64
    bank = ap.active_bank()
    assert hint_of_bank(maps, bank) == addrhint.build([pfx("10.0.0.0/24"), pfx("10.1.0.0/16")])
    assert applied(ap, maps, ["10.0.0.0/24", "10.1.0.0/16"]) == 5  # the other bank, empty
    assert applied(ap, maps, ["10.0.0.0/24", "10.1.0.0/16"]) == 0  # same prefixes again
    assert applied(ap, maps, ["10.0.0.0/24"]) == 4  # a prefix gone: its words cleared
    assert hint_of_bank(maps, ap.active_bank()) == addrhint.build([pfx("10.0.0.0/24")])
