"""A dict-backed stand-in for control/maps.py, so the compiler and the applier can be
tested without root or a kernel."""

from __future__ import annotations

import ctypes as ct
from typing import Any

import numpy as np

from xdpgate.control import layout
from xdpgate.control.maps import MapSet


def _kb(k: Any) -> bytes:
    return bytes(k)


class FakeMap:
    def __init__(self, name: str, key_t: Any, val_t: Any, percpu: bool = False,
                 fail_after: int | None = None) -> None:
        self.name, self.key_t, self.val_t, self.percpu = name, key_t, val_t, percpu
        self.ncpu = 2 if percpu else 1
        self._vbuf_t = val_t * self.ncpu if percpu else val_t
        self.d: dict[bytes, bytes] = {}
        self.writes = 0
        self.fail_after = fail_after

    def _key(self, k: Any) -> Any:
        return k if isinstance(k, ct._SimpleCData | ct.Structure) else self.key_t(k)

    def get(self, key: Any) -> Any:
        b = self.d.get(_kb(self._key(key)))
        return None if b is None else self._vbuf_t.from_buffer_copy(b)

    def set(self, key: Any, value: Any, flags: int = 0) -> None:
        self.writes += 1
        if self.fail_after is not None and self.writes > self.fail_after:
            raise OSError(28, "No space left on device")
        self.d[_kb(self._key(key))] = bytes(value)

    def delete(self, key: Any) -> bool:
        return self.d.pop(_kb(self._key(key)), None) is not None

    def keys(self):
        for k in list(self.d):
            yield self.key_t.from_buffer_copy(k)

    def items(self):
        for k, v in list(self.d.items()):
            yield self.key_t.from_buffer_copy(k), self._vbuf_t.from_buffer_copy(v)

    def set_many(self, keys: list[Any], values: list[Any]) -> None:
        for k, v in zip(keys, values):
            self.set(k, v)

    def set_many_raw(self, kbuf: bytes, vbuf: bytes, n: int) -> None:
        ks, vs = ct.sizeof(self.key_t), ct.sizeof(self._vbuf_t)
        for i in range(n):
            self.set(self.key_t.from_buffer_copy(kbuf, i * ks),
                     self._vbuf_t.from_buffer_copy(vbuf, i * vs))

    def delete_many_raw(self, kbuf: bytes, n: int) -> None:
        ks = ct.sizeof(self.key_t)
        for i in range(n):
            self.delete(self.key_t.from_buffer_copy(kbuf, i * ks))

    def delete_many(self, keys: list[Any]) -> None:
        for k in keys:
            self.delete(k)

    def sum(self, value: Any) -> tuple[int, int]:
        return sum(c.pkts for c in value), sum(c.bytes for c in value)

    def close(self) -> None:
        pass


class FakeWords(FakeMap):
    """An mmapable array of u64 (the IPv4 table), held in numpy as the kernel would hold it."""

    def __init__(self, name: str, key_t: Any, val_t: Any, n: int) -> None:
        super().__init__(name, key_t, val_t)
        self.w = np.zeros(n, dtype=np.uint64)

    def set_many_raw(self, kbuf: bytes, vbuf: bytes, n: int) -> None:
        self.writes += n
        if self.fail_after is not None and self.writes > self.fail_after:
            raise OSError(28, "No space left on device")
        self.w[np.frombuffer(kbuf, dtype=np.uint32, count=n)] = np.frombuffer(vbuf, np.uint64, n)

    def put_words(self, idx: np.ndarray, values: np.ndarray) -> None:
        self.writes += len(idx)
        if self.fail_after is not None and self.writes > self.fail_after:
            raise OSError(28, "No space left on device")
        self.w[idx] = values

    def words(self, start: int, count: int) -> np.ndarray:
        return self.w[start:start + count].copy()


def fake_mapset(sizes: layout.Sizes | None = None) -> MapSet:
    sizes = sizes or layout.Sizes()
    maps = {n: FakeMap(n, k, v, percpu=n in {"counters", "rule_hits", "dims", "events"})
            for n, (k, v) in MapSet.types(sizes).items()}
    maps["addr4"] = FakeWords("addr4", *MapSet.types(sizes)["addr4"], 2 * layout.A4_WORDS)
    return MapSet(sizes, maps)


def apply_set(ap: Any, maps: MapSet, prefixes: list[str], *watch: str) -> tuple[int, ...]:
    """Apply, through the Applier `ap`, a one-rule policy dropping sources in a set of these
    prefixes; returns how many writes each map named in `watch` took."""
    from xdpgate.control import compile as comp
    from xdpgate.control import policy as pol
    from xdpgate.control import sets

    p = pol.from_dict({"default": "allow", "sets": {"s": prefixes},
                       "rules": [{"name": "r", "match": {"src_set": "s"}, "action": "drop"}]})
    w = comp.compile_policy(p, {"s": sets.parse_lines(prefixes, "s")}, maps.sizes, ap.classes)
    before = [maps[n].writes for n in watch]
    ap.apply(w)
    return tuple(maps[n].writes - b for n, b in zip(watch, before))

