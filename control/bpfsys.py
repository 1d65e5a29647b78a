"""The bpf(2) system calls xdpgate needs beyond compiling, through ctypes.

bcc compiles and loads; everything that must also work on maps the running filter
pinned (stats, flows, restart adoption, tests) goes through these calls on plain
file descriptors: open a pin, look up/update/delete (one or in batches), walk
keys, query program and map info, and BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os

_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long
_NR_BPF = 321  # x86_64

MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 1, 2, 3, 4
PROG_LOAD, OBJ_PIN, OBJ_GET, PROG_TEST_RUN = 5, 6, 7, 10
PROG_GET_FD_BY_ID, MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 13, 14, 15
MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH, MAP_DELETE_BATCH = 24, 26, 27

ANY, NOEXIST, EXIST = 0, 1, 2


class _Attr(ct.Union):
    _fields_ = [("raw", ct.c_uint8 * 160)]


def _call(cmd: int, attr: ct.Structure) -> int:
    ret = _libc.syscall(_NR_BPF, cmd, ct.byref(attr), ct.sizeof(attr))
    if ret < 0:
        e = ct.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


class _Elem(ct.Structure):
    _fields_ = [("map_fd", ct.c_uint32), ("pad", ct.c_uint32), ("key", ct.c_uint64),
                ("value", ct.c_uint64), ("flags", ct.c_uint64)]


class _ObjGet(ct.Structure):
    _fields_ = [("pathname", ct.c_uint64), ("bpf_fd", ct.c_uint32), ("file_flags", ct.c_uint32)]


class _TestRun(ct.Structure):
    _fields_ = [("prog_fd", ct.c_uint32), ("retval", ct.c_uint32), ("data_size_in", ct.c_uint32),
                ("data_size_out", ct.c_uint32), ("data_in", ct.c_uint64), ("data_out", ct.c_uint64),
                ("repeat", ct.c_uint32), ("duration", ct.c_uint32), ("ctx_size_in", ct.c_uint32),
                ("ctx_size_out", ct.c_uint32), ("ctx_in", ct.c_uint64), ("ctx_out", ct.c_uint64),
                ("flags", ct.c_uint32), ("cpu", ct.c_uint32), ("batch_size", ct.c_uint32),
                ("pad", ct.c_uint32)]


class _GetById(ct.Structure):
    _fields_ = [("id", ct.c_uint32), ("next_id", ct.c_uint32), ("open_flags", ct.c_uint32)]


class _Info(ct.Structure):
    _fields_ = [("bpf_fd", ct.c_uint32), ("info_len", ct.c_uint32), ("info", ct.c_uint64)]


class _Batch(ct.Structure):
    _fields_ = [("in_batch", ct.c_uint64), ("out_batch", ct.c_uint64), ("keys", ct.c_uint64),
                ("values", ct.c_uint64), ("count", ct.c_uint32), ("map_fd", ct.c_uint32),
                ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


_U32, _U64 = ct.c_uint32, ct.c_uint64


class ProgInfo(ct.Structure):
    """struct bpf_prog_info up to verified_insns (kernels before 5.16 leave it 0)."""

    _fields_ = [("type", _U32), ("id", _U32), ("tag", ct.c_uint8 * 8),
                ("jited_prog_len", _U32), ("xlated_prog_len", _U32),
                ("jited_prog_insns", _U64), ("xlated_prog_insns", _U64),
                ("load_time", _U64), ("created_by_uid", _U32),
                ("nr_map_ids", _U32), ("map_ids", _U64), ("name", ct.c_char * 16),
                ("ifindex", _U32), ("gpl_compatible", _U32), ("netns_dev", _U64),
                ("netns_ino", _U64), ("nr_jited_ksyms", _U32), ("nr_jited_func_lens", _U32),
                ("jited_ksyms", _U64), ("jited_func_lens", _U64), ("btf_id", _U32),
                ("func_info_rec_size", _U32), ("func_info", _U64), ("nr_func_info", _U32),
                ("nr_line_info", _U32), ("line_info", _U64), ("jited_line_info", _U64),
                ("nr_jited_line_info", _U32), ("line_info_rec_size", _U32),
                ("jited_line_info_rec_size", _U32), ("nr_prog_tags", _U32), ("prog_tags", _U64),
                ("run_time_ns", _U64), ("run_cnt", _U64), ("recursion_misses", _U64),
                ("verified_insns", _U32)]


class MapInfo(ct.Structure):
    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("key_size", ct.c_uint32),
                ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32),
                ("map_flags", ct.c_uint32), ("name", ct.c_char * 16)]


def _addr(buf) -> int:
    return ct.addressof(buf) if buf is not None else 0


class _ProgLoad(ct.Structure):
    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32),
                ("prog_flags", ct.c_uint32), ("prog_name", ct.c_char * 16),
                ("prog_ifindex", ct.c_uint32), ("expected_attach_type", ct.c_uint32)]


def load_xdp_pass(name: str = "xdp_pass") -> int:
    """A two-instruction XDP program that passes everything (`r0 = XDP_PASS; exit`)."""
    insns = ct.create_string_buffer(bytes.fromhex("b700000002000000" "9500000000000000"), 16)
    lic = ct.create_string_buffer(b"GPL")
    return _call(PROG_LOAD, _ProgLoad(prog_type=6, insn_cnt=2, insns=ct.addressof(insns),
                                      license=ct.addressof(lic), prog_name=name.encode()[:15]))


def obj_get(path: str) -> int:
    p = ct.create_string_buffer(path.encode())
    return _call(OBJ_GET, _ObjGet(pathname=ct.addressof(p)))


def obj_pin(fd: int, path: str) -> None:
    p = ct.create_string_buffer(path.encode())
    _call(OBJ_PIN, _ObjGet(pathname=ct.addressof(p), bpf_fd=fd))


def _found(cmd: int, attr: _Elem) -> bool:
    """Run a map command that answers ENOENT for a missing key: False then."""
    try:
        _call(cmd, attr)
        return True
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False
        raise


def lookup(fd: int, key, value) -> bool:
    return _found(MAP_LOOKUP_ELEM, _Elem(map_fd=fd, key=_addr(key), value=_addr(value)))


def update(fd: int, key, value, flags: int = ANY) -> None:
    _call(MAP_UPDATE_ELEM, _Elem(map_fd=fd, key=_addr(key), value=_addr(value), flags=flags))


def delete(fd: int, key) -> bool:
    return _found(MAP_DELETE_ELEM, _Elem(map_fd=fd, key=_addr(key)))


def next_key(fd: int, key, out) -> bool:
    return _found(MAP_GET_NEXT_KEY, _Elem(map_fd=fd, key=_addr(key), value=_addr(out)))


def update_batch(fd: int, keys, values, count: int, flags: int = ANY) -> int:
    """Write `count` entries from contiguous arrays; returns how many were written."""
    a = _Batch(keys=_addr(keys), values=_addr(values), count=count, map_fd=fd, elem_flags=flags)
    _call(MAP_UPDATE_BATCH, a)
    return a.count


def delete_batch(fd: int, keys, count: int) -> int:
    a = _Batch(keys=_addr(keys), count=count, map_fd=fd)
    _call(MAP_DELETE_BATCH, a)
    return a.count


def lookup_batch(fd: int, in_batch, out_batch, keys, values, count: int) -> tuple[int, bool]:
    """One step of a batched walk; returns (entries read, reached the end)."""
    a = _Batch(in_batch=_addr(in_batch), out_batch=_addr(out_batch), keys=_addr(keys),
               values=_addr(values), count=count, map_fd=fd)
    try:
        _call(MAP_LOOKUP_BATCH, a)
        return a.count, False
    except OSError as e:
        if e.errno == errno.ENOENT:
            return a.count, True
        raise


def prog_fd_by_id(prog_id: int) -> int:
    return _call(PROG_GET_FD_BY_ID, _GetById(id=prog_id))


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    _call(OBJ_GET_INFO_BY_FD, _Info(bpf_fd=fd, info_len=ct.sizeof(info), info=ct.addressof(info)))
    return info


def prog_map_ids(fd: int) -> list[int]:
    """Ids of the maps a program uses."""
    n = prog_info(fd).nr_map_ids
    ids = (ct.c_uint32 * max(n, 1))()
    info = ProgInfo(nr_map_ids=n, map_ids=ct.addressof(ids))
    _call(OBJ_GET_INFO_BY_FD, _Info(bpf_fd=fd, info_len=ct.sizeof(info), info=ct.addressof(info)))
    return list(ids[:min(n, info.nr_map_ids)])


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    _call(OBJ_GET_INFO_BY_FD, _Info(bpf_fd=fd, info_len=ct.sizeof(info), info=ct.addressof(info)))
    return info


def test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> tuple[int, bytes, int]:
    """Run an XDP program on one frame: (XDP action, frame after the program, ns per run)."""
    din = ct.create_string_buffer(frame, len(frame))
    dout = ct.create_string_buffer(len(frame) + 256)
    a = _TestRun(prog_fd=prog_fd, data_size_in=len(frame), data_size_out=len(dout),
                 data_in=ct.addressof(din), data_out=ct.addressof(dout), repeat=repeat)
    _call(PROG_TEST_RUN, a)
    return a.retval, dout.raw[: a.data_size_out], a.duration


def possible_cpus() -> int:
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
        return n
