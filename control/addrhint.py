"""The address hint: which addresses may be in a set, one bit per slot.

A lookup in an LPM trie of a million prefixes walks a couple of dozen nodes, each a
cache miss on a new flow. Most addresses are in no set at all, so the data path
first tests one bit: IPv4 addresses by their /24, IPv6 addresses by a hash of
their first 32 bits. A clear bit means "in no set" without touching the trie; a
set bit sends the address on to the trie, which gives the answer. A bit is set
for every slot a prefix overlaps (a prefix shorter than the slot sets every slot
under it; an IPv6 prefix shorter than /16 sets them all), so the hint can only
let through too much, never hide a member.

Layout (bpf/maps.h `addrhint`, constants in bpf/xdpgate_consts.h / layout.py): per bank,
the IPv4 bits then the IPv6 bits, each HINT_WORDS u64 words; bit i of a family is bit
i % 64 of word i // 64, i.e. byte i // 8, bit i % 8 of the little-endian bytes below.
"""

from __future__ import annotations

import array
from collections.abc import Iterable

from .layout import HINT_BITS, HINT_MUL, HINT_WORDS

FAMILY_BYTES = HINT_WORDS * 8
SIZE = 2 * FAMILY_BYTES  # one bank: IPv4 then IPv6
_V6_EXPAND_MAX = 16  # an IPv6 prefix covering more than 2^16 /32s saturates the family
_CHUNK = 4096
_SHIFT4 = 32 - HINT_BITS


def slot4(addr: int) -> int:
    """The slot of an IPv4 address (an int): its /24."""
    return addr >> _SHIFT4


def slot6(addr: int) -> int:
    """The slot of an IPv6 address (an int): a multiplicative hash of its first 32 bits."""
    return ((addr >> 96) * HINT_MUL & 0xFFFFFFFF) >> (32 - HINT_BITS)


def _set(b: bytearray, i: int) -> None:
    b[i >> 3] |= 1 << (i & 7)


def _set_range4(b: bytearray, net: int, plen: int) -> None:
    """Every /24 slot under net/plen (plen < 24): an aligned run of 2^(24-plen) bits."""
    start, count = slot4(net), 1 << (HINT_BITS - plen)
    if count >= 8:
        b[start >> 3:(start + count) >> 3] = b"\xff" * (count >> 3)
    else:
        b[start >> 3] |= ((1 << count) - 1) << (start & 7)


def add(hint: bytearray, prefixes: Iterable[tuple[int, int, int]]) -> None:
    """Set the bits of (version, network int, prefix length) prefixes in one bank's hint."""
    v4 = memoryview(hint)[:FAMILY_BYTES]
    v6 = memoryview(hint)[FAMILY_BYTES:]
    full6 = False
    for ver, net, plen in prefixes:
        if ver == 4:
            if plen >= HINT_BITS:
                i = net >> _SHIFT4
                v4[i >> 3] |= 1 << (i & 7)
            else:
                _set_range4(v4, net, plen)
        elif not full6:
            if plen >= 32:
                _set(v6, slot6(net))
            elif 32 - plen <= _V6_EXPAND_MAX:
                top = net >> 96
                for t in range(top, top + (1 << (32 - plen))):
                    _set(v6, slot6(t << 96))
            else:
                v6[:] = b"\xff" * FAMILY_BYTES
                full6 = True


def build(prefixes: Iterable[tuple[int, int, int]]) -> bytearray:
    """A bank's hint for these prefixes."""
    hint = bytearray(SIZE)
    add(hint, prefixes)
    return hint


def changed_words(old: bytes | None, new: bytes) -> tuple[array.array, array.array]:
    """Word indexes (within the bank) and values where `new` differs from `old`; every
    word when `old` is None (what the bank holds is not known)."""
    idx, val = array.array("I"), array.array("Q")
    words = memoryview(new).cast("Q")
    if old is None:
        idx.extend(range(len(words)))
        val.frombytes(bytes(new))
        return idx, val
    for off in range(0, len(new), _CHUNK):
        if old[off:off + _CHUNK] == new[off:off + _CHUNK]:
            continue
        ow = memoryview(old[off:off + _CHUNK]).cast("Q")
        base = off // 8
        for j, w in enumerate(words[base:base + _CHUNK // 8]):
            if ow[j] != w:
                idx.append(base + j)
                val.append(w)
    return idx, val
