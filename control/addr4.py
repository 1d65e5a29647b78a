"""The IPv4 address table: an address's class in one array read, rarely two or three.

An LPM trie of a million prefixes costs a new flow a couple of dozen dependent cache
misses per address. IPv4 addresses go through a table instead (bpf/maps.h `addr4`,
constants in bpf/xdpgate_consts.h / layout.py): one 16-bit entry per /24 and bank.

* A /24 that no prefix longer than /24 touches has its class in the entry: the class of
  the longest prefix of length <= 24 that covers it (0: in no set).
* A /24 that holds longer prefixes is "spilled": the entry is A4_SPILL plus a bit per
  length 25..32 present in it (bit len - 25). The data path looks the address up in the
  `pfx4` hash at each such length, longest first, and falls back to the /24's base class
  (a PFX_BASE entry, absent when it is 0).

`pfx4` also keeps every prefix of the bank as a PFX_PREFIX entry, so a bank can be read
back (after adoption or a failed apply) without the table having to be reversible.
Classes already include the classes of their ancestors (control/compile.py), so the
longest match alone is the answer, as with a trie.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .layout import A4_SPILL, A4_WORDS

SLOTS = 4 * A4_WORDS  # /24s


def build(prefixes: Iterable[tuple[tuple[int, int, int], int]]) -> tuple[np.ndarray, dict[int, int]]:
    """The table of one bank (uint16 per /24) and its base classes (/24 -> class) for
    ((4, network int, prefix length), class) pairs; pairs of other versions are ignored."""
    table = np.zeros(SLOTS, dtype=np.uint16)
    bases: dict[int, int] = {}
    paint(table, bases, 0, SLOTS, 0, prefixes)
    return table, bases


def paint(table: np.ndarray, bases: dict[int, int], lo: int, hi: int, fill: int,
          prefixes: Iterable[tuple[tuple[int, int, int], int]]) -> None:
    """Recompute the /24s lo..hi-1 of `table` and their entries in `bases`, in place, from
    the (prefix, class) pairs lying in them. `fill` is the class of the longest prefix of
    length <= 24 that covers the whole range from outside it (0: none). An apply that
    changed a few prefixes repaints only their ranges (control/apply.py)."""
    table[lo:hi] = fill
    short: list[tuple[int, int, int]] = []
    s24, c24, long_slot, long_bit = [], [], [], []
    for (ver, net, plen), cid in prefixes:
        if ver != 4:
            continue
        if plen < 24:
            short.append((plen, net >> 8, cid))
        elif plen == 24:
            s24.append(net >> 8)
            c24.append(cid)
        else:
            long_slot.append(net >> 8)
            long_bit.append(1 << (plen - 25))
    for plen, slot, cid in sorted(short):  # shorter first: a longer prefix overwrites
        table[slot:slot + (1 << (24 - plen))] = cid
    if s24:
        table[np.array(s24, dtype=np.int64)] = np.array(c24, dtype=np.uint16)
    # the range's old base classes go (walking whichever is shorter: bases or the range)
    if len(bases) < hi - lo:
        stale = [s for s in bases if lo <= s < hi]
    else:
        stale = [s for s in range(lo, hi) if s in bases]
    for s in stale:
        del bases[s]
    if long_slot:
        slots = np.array(long_slot, dtype=np.int64)
        spilled = np.unique(slots)
        lens = np.zeros(spilled.size, dtype=np.uint16)
        np.bitwise_or.at(lens, np.searchsorted(spilled, slots),
                         np.array(long_bit, dtype=np.uint16))
        base = table[spilled]
        has = base != 0
        bases.update(zip(spilled[has].tolist(), base[has].tolist()))
        table[spilled] = A4_SPILL | lens
