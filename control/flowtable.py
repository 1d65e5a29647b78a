"""The flow table as the controller sees it.

The data path keeps flows in a set-associative table (bpf/maps.h, struct xg_flowset): the
`flows` array holds the entries, `flowsets` a word per way of each set (tag and last
seen). A flow lives in one of two sets picked by its hash. This module computes the same
hash as bpf/flowhash.h, so it can find, list, add and remove flows by key. Writers here
race only with the data path's own updates of the same sets (an entry it adds meanwhile
may be lost), which is fine for what uses them: listing, tests and benchmarks.
"""

from __future__ import annotations

import ctypes as ct
import struct
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from . import layout

if TYPE_CHECKING:
    import numpy as np

    from .maps import Map

MASK64 = (1 << 64) - 1
WAYS = layout.FLOW_WAYS
_WORDS = struct.Struct("<5QI")


def _mix(h: int, v: int) -> int:
    h = ((h ^ v) * layout.HASH_MUL) & MASK64
    return h ^ (h >> 31)


def flow_hash(key: layout.FlowKey | bytes, seed: int) -> int:
    """xg_flow_hash(): the key's five 8-byte words and its tunnel id, mixed from the seed."""
    *words, tun_id = _WORDS.unpack_from(bytes(key))
    h = seed
    for w in words:
        h = _mix(h, w)
    return _mix(h, tun_id)


def _set_of(h: int, nsets: int) -> int:
    return ((h >> 32) * nsets) >> 32


def place(h: int, nsets: int) -> tuple[int, int, int]:
    """(first set, second set, tag) of a hash, as xg_flow_set(), xg_flow_set2() and
    xg_flow_tag()."""
    return (_set_of(h, nsets), _set_of((h * layout.HASH_MUL2) & MASK64, nsets),
            (h & 0xFFFFFFFF) | 1)


def seen_now() -> int:
    """The data path's way age clock now (its clock is the coarse monotonic one, a tick or
    two behind this)."""
    return (time.clock_gettime_ns(time.CLOCK_MONOTONIC) >> layout.SEEN_SHIFT) & 0xFFFFFFFF


def live(word: int) -> bool:
    return bool(word & 1)


# A way's seen time is 32 bits of the way clock, which wraps after 2^32 units (~52 days at
# SEEN_SHIFT 20): a flow unseen for longer would look just seen and outlive live flows.
# FlowTable.cap_ages() sets a way unseen for more than AGE_CAP units back to exactly AGE_CAP;
# run more often than every 2^32 - AGE_CAP units (~26 days), no way's age ever wraps.
AGE_CAP = 1 << 31


class FlowTable:
    """Find, list, add and remove flows of one filter's table."""

    def __init__(self, slots: Map, sets: Map, seed: int, flow_max: int) -> None:
        self.slots, self.sets, self.seed = slots, sets, seed
        self.nsets = flow_max // WAYS

    def _where(self, key: layout.FlowKey) -> tuple[int, int, int]:
        return place(flow_hash(key, self.seed), self.nsets)

    def _way_of(self, si: int, fs: layout.FlowSet, tag: int, raw: bytes,
                staged: dict[int, layout.FlowSlot] | None = None) -> int | None:
        """The way of set `si` holding key `raw`, or None; `staged` entries (not yet
        written) are looked at before the map's."""
        for w in range(WAYS):
            if fs.way[w] & 0xFFFFFFFF == tag:
                idx = si * WAYS + w
                s = staged.get(idx) if staged else None
                if s is None:
                    s = self.slots.get(ct.c_uint32(idx))
                if s is not None and bytes(s.key) == raw:
                    return w
        return None

    def find(self, key: layout.FlowKey) -> tuple[int, int, layout.FlowSet] | None:
        """(set, way, set words) of the key's entry, or None: its first set, then its
        second, as the data path looks."""
        *sis, tag = self._where(key)
        for si in sis:
            fs = self.sets.get(ct.c_uint32(si))
            w = None if fs is None else self._way_of(si, fs, tag, bytes(key))
            if w is not None:
                return si, w, fs
        return None

    def get(self, key: layout.FlowKey) -> layout.Flow | None:
        found = self.find(key)
        if found is None:
            return None
        si, w, _ = found
        return self.slots.get(ct.c_uint32(si * WAYS + w)).val

    def __getitem__(self, key: layout.FlowKey) -> layout.Flow:
        f = self.get(key)
        if f is None:
            raise KeyError(key)
        return f

    def delete(self, key: layout.FlowKey) -> bool:
        found = self.find(key)
        if found is None:
            return False
        si, w, fs = found
        fs.way[w] = 0
        self.sets.set(ct.c_uint32(si), fs)
        return True

    def delete_many(self, keys: Iterable[layout.FlowKey]) -> None:
        for k in keys:
            self.delete(k)

    def clear(self) -> None:
        """Empty the table (every set's words to 0)."""
        empty = layout.FlowSet()
        self.sets.set_many([ct.c_uint32(i) for i in range(self.nsets)], [empty] * self.nsets)

    def items(self) -> Iterator[tuple[layout.FlowKey, layout.Flow]]:
        """Every flow in the table, as ctypes records (from one snapshot)."""
        for row in self.snapshot():
            yield (layout.FlowKey.from_buffer_copy(row["key"].tobytes()),
                   layout.Flow.from_buffer_copy(row["val"].tobytes()))

    def _used(self) -> np.ndarray:
        """Indices of the entries in use (their way words are live), from the mapped sets."""
        import numpy as np

        n = self.nsets * WAYS
        with self.sets.mapped(self.nsets * ct.sizeof(layout.FlowSet)) as sm:
            words = np.frombuffer(sm, dtype="<u8", count=n)
            used = np.flatnonzero(words & 1)
            del words
        return used

    def snapshot(self) -> np.ndarray:
        """Every flow in the table as one numpy array of struct xg_flow_slot records (fields
        `key` and `val`), copied out of the mapped arrays in a few vectorised steps: what
        listing a table of millions of flows needs. Entries the data path writes meanwhile
        may be copied half old, half new."""
        import numpy as np

        used, n = self._used(), self.nsets * WAYS
        with self.slots.mapped(n * ct.sizeof(layout.FlowSlot)) as fm:
            slots = np.frombuffer(fm, dtype=np.dtype(layout.FlowSlot), count=n)
            out = slots[used]  # fancy indexing: a copy, the mapping can go
            del slots
        return out

    def cap_ages(self, now: int | None = None) -> int:
        """Set the ways of flows unseen for more than AGE_CAP units back to AGE_CAP (see
        AGE_CAP); returns how many. `now` is the way clock (seen_now() unless given). Only
        the seen half of a word is written, as the data path writes it, and only where it
        still holds the old time just before the write: a flow seen meanwhile, or a new flow
        in the way, keeps its time."""
        import numpy as np

        now = seen_now() if now is None else now & 0xFFFFFFFF
        n = self.nsets * WAYS
        with self.sets.mapped(self.nsets * ct.sizeof(layout.FlowSet), write=True) as sm:
            halves = np.frombuffer(sm, dtype="<u4", count=2 * n)
            tags, seen = halves[0::2], halves[1::2]
            old = np.flatnonzero((tags & 1).astype(bool)
                                 & (np.uint32(now) - seen > AGE_CAP))
            old = old[np.uint32(now) - seen[old] > AGE_CAP]  # again, just before the write
            seen[old] = np.uint32((now - AGE_CAP) & 0xFFFFFFFF)
            del halves, tags, seen
        return len(old)

    def keys(self) -> Iterator[layout.FlowKey]:
        for k, _ in self.items():
            yield k

    def __len__(self) -> int:
        return len(self._used())

    def set_many(self, keys: list[layout.FlowKey], values: list[layout.Flow]) -> int:
        """Add flows as the data path would (an empty way, else the longest unseen of the
        key's two sets, the first's on a tie; an existing entry of the key is overwritten);
        returns how many replaced another flow."""
        now = seen_now()
        sets: dict[int, layout.FlowSet] = {}
        slots: dict[int, layout.FlowSlot] = {}
        evicted = 0

        def words(si: int) -> layout.FlowSet:
            fs = sets.get(si)
            if fs is None:
                fs = sets[si] = self.sets.get(ct.c_uint32(si)) or layout.FlowSet()
            return fs

        def score(word: int) -> int:  # as the data path weighs a way: empty, else longest unseen
            if not word:
                return 0xFFFFFFFF
            if word & 0xFFFFFFFF == layout.WAY_BUSY:
                return 0
            return ((now - (word >> 32)) & 0xFFFFFFFF) | 1

        for key, val in zip(keys, values, strict=True):
            *sis, tag = self._where(key)
            raw, where = bytes(key), None
            for si in sis:
                way = self._way_of(si, words(si), tag, raw, slots)
                if way is not None:
                    where = si, way
                    break
            if where is None:  # max() keeps the first of equal scores: the first set's
                where = max(((si, w) for si in sis for w in range(WAYS)),
                            key=lambda sw: score(words(sw[0]).way[sw[1]]))
                evicted += live(words(where[0]).way[where[1]])
            si, way = where
            words(si).way[way] = (now << 32) | tag
            slots[si * WAYS + way] = layout.FlowSlot(key=key, val=val)
        idx = sorted(slots)
        self.slots.set_many([ct.c_uint32(i) for i in idx], [slots[i] for i in idx])
        sidx = sorted(sets)
        self.sets.set_many([ct.c_uint32(i) for i in sidx], [sets[i] for i in sidx])
        return evicted
