"""The IPv6 address hint: which IPv6 addresses may be in a set, one bit per slot.

A lookup in an LPM trie of a million prefixes walks a couple of dozen nodes, each a
cache miss on a new flow. Most addresses are in no set at all, so the data path first
tests one bit, at a slot given by a hash of the address's first 32 bits. A clear bit
means "in no set" without touching the trie; a set bit sends the address on to the
trie, which gives the answer. A bit is set for every slot a prefix overlaps (a prefix
shorter than /16 sets them all), so the hint can only let through too much, never hide
a member. That is also why a prefix taken out of the sets may leave its bits set: the
applier clears them by rebuilding the hint only once such stale bits add up to STALE_MAX
(1/64 of the slots, so at most 1.6 % of addresses go to the trie for nothing), instead of
going over every IPv6 prefix at each removal. (IPv4 addresses have a table of their own:
control/addr4.py.)

Layout (bpf/maps.h `addrhint`, constants in bpf/xdpgate_consts.h / layout.py): per bank,
HINT_WORDS u64 words; bit i is bit i % 64 of word i // 64, i.e. byte i // 8, bit i % 8 of
the little-endian bytes below.
"""

from __future__ import annotations

import array
from collections.abc import Iterable

from .layout import HINT_BITS, HINT_MUL, HINT_WORDS

SIZE = HINT_WORDS * 8  # one bank
_V6_EXPAND_MAX = 16  # a prefix covering more than 2^16 /32s saturates the hint
_CHUNK = 4096


def slot6(addr: int) -> int:
    """The slot of an IPv6 address (an int): a multiplicative hash of its first 32 bits."""
    return ((addr >> 96) * HINT_MUL & 0xFFFFFFFF) >> (32 - HINT_BITS)


STALE_MAX = SIZE * 8 // 64


def weight(prefixes: Iterable[tuple[int, int, int]]) -> int:
    """How many bits these prefixes set at most (IPv4 ones none; one too wide to expand
    counts as the whole hint)."""
    n = 0
    for ver, _, plen in prefixes:
        if ver == 6:
            n += 1 if plen >= 32 else 1 << (32 - plen) if 32 - plen <= _V6_EXPAND_MAX else SIZE * 8
    return n


def _set(b: bytearray, i: int) -> None:
    b[i >> 3] |= 1 << (i & 7)


def add(hint: bytearray, prefixes: Iterable[tuple[int, int, int]]) -> None:
    """Set the bits of (version, network int, prefix length) prefixes in one bank's hint;
    IPv4 prefixes are skipped."""
    for ver, net, plen in prefixes:
        if ver != 6:
            continue
        if plen >= 32:
            _set(hint, slot6(net))
        elif 32 - plen <= _V6_EXPAND_MAX:
            top = net >> 96
            for t in range(top, top + (1 << (32 - plen))):
                _set(hint, slot6(t << 96))
        else:
            hint[:] = b"\xff" * SIZE
            return


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
