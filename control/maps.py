"""Typed handles on the data path's maps, by file descriptor.

The same classes serve a program bcc just loaded and the pinned maps of a filter
that is already running (stats, flows, restart adoption), so nothing here imports
bcc. Counters are read in batches and summed over CPUs once per read.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import mmap
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import bpfsys, layout
from .flowtable import FlowTable
from .layout import Sizes

PERCPU = {"counters", "rule_hits", "dims", "events"}
PINNED = ("config", "policy", "rules", "fieldbits", "portbits", "addrclass", "tunid", "addr4",
          "pfx4", "lpm6", "addrhint", "flows", "flowsets", "mailbox", "expect", "expect_live", "counters",
          "rule_hits", "dims", "events", "buckets", "scratch", "progs")


class Map:
    """One BPF map with ctypes key and value types."""

    def __init__(self, name: str, fd: int, key_t: Any, val_t: Any, percpu: bool = False,
                 owns_fd: bool = False) -> None:
        self.name, self.fd, self.key_t, self.val_t, self.percpu = name, fd, key_t, val_t, percpu
        self._owns_fd = owns_fd
        self.ncpu = bpfsys.possible_cpus() if percpu else 1
        if percpu:
            self._vbuf_t = val_t * self.ncpu
        else:
            self._vbuf_t = val_t

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _key(self, k: Any) -> Any:
        return k if isinstance(k, ct._SimpleCData | ct.Structure) else self.key_t(k)

    @contextlib.contextmanager
    def mapped(self, size: int, write: bool = False) -> Iterator[mmap.mmap]:
        """A shared mapping of the first `size` bytes of an mmapable array's values,
        read-only unless `write`."""
        page = mmap.PAGESIZE
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if write else 0)
        mm = mmap.mmap(self.fd, -(-size // page) * page, mmap.MAP_SHARED, prot)
        try:
            yield mm
        finally:
            try:
                mm.close()
            except BufferError:
                # an exception on its way out keeps the caller's frame, and the numpy view
                # in it, alive: the mapping goes with the view, and the exception is not
                # hidden behind "cannot close exported pointers exist"
                pass

    def words(self, start: int, count: int) -> Any:
        """Values start..start+count-1 of an mmapable array of u64, as a numpy array (a copy)."""
        import numpy as np

        with self.mapped((start + count) * 8) as mm:
            view = np.frombuffer(mm, dtype=np.uint64, count=count, offset=start * 8)
            out = view.copy()
            del view
        return out

    def put_words(self, idx: Any, values: Any) -> None:
        """Set the values idx[i] of an mmapable array of u64 to values[i] (numpy arrays)
        with a memory copy through a writable mapping: a batch update costs a syscall
        per 131,072 entries and ~0.2 us an entry in the kernel. Where the kernel refuses
        a writable mapping, through batch updates."""
        import numpy as np

        if not len(idx):
            return
        top = int(idx.max()) + 1
        try:
            with self.mapped(top * 8, write=True) as mm:
                view = np.frombuffer(mm, dtype=np.uint64, count=top)
                view[idx] = values
                del view
        except OSError:
            self.set_many_raw(np.asarray(idx, dtype=np.uint32).tobytes(),
                              np.asarray(values, dtype=np.uint64).tobytes(), len(idx))

    def get(self, key: Any) -> Any | None:
        v = self._vbuf_t()
        return v if bpfsys.lookup(self.fd, self._key(key), v) else None

    def set(self, key: Any, value: Any, flags: int = bpfsys.ANY) -> None:
        bpfsys.update(self.fd, self._key(key), value, flags)

    def delete(self, key: Any) -> bool:
        return bpfsys.delete(self.fd, self._key(key))

    def keys(self) -> Iterator[Any]:
        prev = None
        while True:
            out = self.key_t()
            if not bpfsys.next_key(self.fd, prev, out):
                return
            yield out
            prev = out

    def items(self, chunk: int = 4096) -> Iterator[tuple[Any, Any]]:
        """All entries, read in batches where the kernel supports it."""
        keys = (self.key_t * chunk)()
        vals = (self._vbuf_t * chunk)()
        # the walk's position: a bucket number for hash maps, a key for the others (the
        # generic batch walk of arrays and tries), so it has room for either
        tok = max(8, ct.sizeof(self.key_t))
        in_b = None
        out_b = ct.create_string_buffer(tok)
        try:
            while True:
                n, done = bpfsys.lookup_batch(self.fd, in_b, out_b, keys, vals, chunk)
                ksz, vsz = ct.sizeof(self.key_t), ct.sizeof(self._vbuf_t)
                kraw = ct.string_at(keys, n * ksz)
                vraw = ct.string_at(vals, n * vsz)
                for i in range(n):
                    yield (self.key_t.from_buffer_copy(kraw, i * ksz),
                           self._vbuf_t.from_buffer_copy(vraw, i * vsz))
                if done:
                    return
                in_b = ct.create_string_buffer(out_b.raw, tok)
        except OSError as e:
            # EINVAL/EOPNOTSUPP/ENOTSUPP on the first step: no batches here, walk instead
            # (later, entries were already yielded: a walk would yield them again)
            if in_b is not None or e.errno not in (22, 95, 524):
                raise
        for k in self.keys():
            v = self.get(k)
            if v is not None:
                yield k, v

    def set_many(self, keys: list[Any], values: list[Any], chunk: int = 65536) -> None:
        """Write many entries with BPF_MAP_UPDATE_BATCH."""
        for i in range(0, len(keys), chunk):
            ks, vs = keys[i : i + chunk], values[i : i + chunk]
            karr = (self.key_t * len(ks))(*ks)
            varr = (self._vbuf_t * len(vs))(*vs)
            bpfsys.update_batch(self.fd, karr, varr, len(ks))

    def set_many_raw(self, kbuf: bytes, vbuf: bytes, n: int, chunk: int = 131072) -> None:
        """Write n entries given as packed key and value bytes (the fast path for big sets)."""
        ks, vs = ct.sizeof(self.key_t), ct.sizeof(self._vbuf_t)
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            kb = ct.create_string_buffer(kbuf[i * ks:(i + m) * ks], m * ks)
            vb = ct.create_string_buffer(vbuf[i * vs:(i + m) * vs], m * vs)
            bpfsys.update_batch(self.fd, kb, vb, m)

    def delete_many_raw(self, kbuf: bytes, n: int, chunk: int = 131072) -> None:
        ks = ct.sizeof(self.key_t)
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            part = kbuf[i * ks:(i + m) * ks]
            try:
                bpfsys.delete_batch(self.fd, ct.create_string_buffer(part, m * ks), m)
            except OSError:
                for j in range(m):  # some already gone: one by one
                    self.delete(self.key_t.from_buffer_copy(part, j * ks))

    def delete_many(self, keys: list[Any], chunk: int = 65536) -> None:
        for i in range(0, len(keys), chunk):
            ks = keys[i : i + chunk]
            karr = (self.key_t * len(ks))(*ks)
            try:
                bpfsys.delete_batch(self.fd, karr, len(ks))
            except OSError:
                for k in ks:  # some entries already gone: delete one by one
                    self.delete(k)

    def sum(self, value: Any) -> tuple[int, int]:
        """(pkts, bytes) of a per-CPU counter cell summed over CPUs."""
        return sum(c.pkts for c in value), sum(c.bytes for c in value)

    def counters(self) -> list[tuple[int, int]]:
        """Every cell of a per-CPU counter array, summed over CPUs, by index."""
        out: dict[int, tuple[int, int]] = {}
        for k, v in self.items():
            out[k.value] = self.sum(v)
        return [out.get(i, (0, 0)) for i in range(max(out) + 1 if out else 0)]


@dataclass
class MapSet:
    """Every map of one filter instance."""

    sizes: Sizes
    maps: dict[str, Map]

    def __getitem__(self, name: str) -> Map:
        return self.maps[name]

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    @property
    def flowtable(self) -> FlowTable:
        """The flow table, by flow key (control/flowtable.py)."""
        seed = self["config"].get(ct.c_uint32(0)).flow_seed
        return FlowTable(self["flows"], self["flowsets"], seed, self.sizes.flow_max)

    def __enter__(self) -> MapSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def types(sizes: Sizes) -> dict[str, tuple[Any, Any]]:
        w = sizes.rule_words
        t = dict(layout.FIXED_LAYOUTS)
        t["fieldbits"] = (ct.c_uint32, layout.bits_type(w))
        t["portbits"] = (ct.c_uint32, layout.portbits_type(w))
        t["addrclass"] = (ct.c_uint32, layout.addrclass_type(w))
        t["tunid"] = (layout.TunidKey, layout.bits_type(w))
        return t

    @classmethod
    def from_fds(cls, sizes: Sizes, fds: dict[str, int], owns: bool = False) -> MapSet:
        types = cls.types(sizes)
        maps = {n: Map(n, fd, *types[n], percpu=n in PERCPU, owns_fd=owns) for n, fd in fds.items()
                if n in types}
        return cls(sizes, maps)

    @classmethod
    def from_pins(cls, sizes: Sizes, pin_dir: Path) -> MapSet:
        fds = {}
        for n in PINNED:
            p = pin_dir / n
            if p.exists():
                fds[n] = bpfsys.obj_get(str(p))
        return cls.from_fds(sizes, fds, owns=True)


def sizes_from_pins(pin_dir: Path) -> Sizes:
    """Recover the load-time sizes of a running filter from its pinned maps."""
    def info(name: str) -> bpfsys.MapInfo:
        fd = bpfsys.obj_get(str(pin_dir / name))
        try:
            return bpfsys.map_info(fd)
        finally:
            os.close(fd)

    rules = info("rules")
    addrc = info("addrclass")
    return Sizes(
        flow_max=info("flows").max_entries,
        rule_max=rules.max_entries // 2,
        addrclass_max=addrc.max_entries // 2,
        lpm4_max=info("pfx4").max_entries // 2,
        lpm6_max=info("lpm6").max_entries,
        expect_max=info("expect").max_entries,
        mailbox_max=info("mailbox").max_entries,
    )


def addr16(ip: str | bytes | Iterable[int]) -> bytes:
    """An address as the data path stores it: 16 bytes, IPv4 as ::ffff:a.b.c.d."""
    import ipaddress

    a = ipaddress.ip_address(ip) if isinstance(ip, str) else None
    if a is None:
        return bytes(ip)
    if a.version == 4:
        return b"\0" * 10 + b"\xff\xff" + a.packed
    return a.packed


def addr_str(b: bytes | Any) -> str:
    """16 data-path address bytes as text (IPv4 for ::ffff:a.b.c.d)."""
    raw = bytes(b)
    if raw[:12] == _V4MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


_V4MAPPED = b"\0" * 10 + b"\xff\xff"
