"""One layout, two languages: control/layout.py must agree with what bcc builds from
bpf/xdpgate_types.h and bpf/xdpgate_consts.h, to the byte and to the enum value.
A drift on either side fails here, naming the map, the field and both values."""

from __future__ import annotations

import ctypes as ct
import enum
import re

import pytest

from xdpgate.control import layout, loader
from xdpgate.control.maps import PERCPU, MapSet

CONSTS_H = loader.bpf_dir() / "xdpgate_consts.h"


def _is_struct(t) -> bool:
    return isinstance(t, type) and issubclass(t, ct.Structure | ct.Union)


def _is_array(t) -> bool:
    return isinstance(t, type) and issubclass(t, ct.Array)


def layout_diff(py, c, path: str) -> list[str]:
    """Every difference between two ctypes types: size, field names, offsets, element types."""
    out = []
    if ct.sizeof(py) != ct.sizeof(c):
        out.append(f"{path}: sizeof {ct.sizeof(py)} in layout.py, {ct.sizeof(c)} in the C")
    if _is_struct(py) or _is_struct(c):
        if not (_is_struct(py) and _is_struct(c)):
            return out + [f"{path}: {py.__name__} vs {c.__name__}: struct on one side only"]
        cf = {n: t for n, t, *_ in c._fields_ if not n.startswith("__pad")}
        pf = {n: t for n, t, *_ in py._fields_}
        for n in sorted(cf.keys() ^ pf.keys()):
            out.append(f"{path}.{n}: only in {'the C' if n in cf else 'layout.py'}")
        for n in pf.keys() & cf.keys():
            po, co = getattr(py, n).offset, getattr(c, n).offset
            if po != co:
                out.append(f"{path}.{n}: offset {po} in layout.py, {co} in the C")
            out += layout_diff(pf[n], cf[n], f"{path}.{n}")
    elif _is_array(py) or _is_array(c):
        if not (_is_array(py) and _is_array(c)):
            return out + [f"{path}: array on one side only"]
        if py._length_ != c._length_:
            out.append(f"{path}: {py._length_} elements in layout.py, {c._length_} in the C")
        out += layout_diff(py._type_, c._type_, f"{path}[]")
    return out


def test_every_map_is_mirrored_in_layout_py(loaded_filter):
    py = MapSet.types(loaded_filter.sizes)
    in_c = {n for n in py if n.encode() in loaded_filter.bpf}
    assert in_c == set(py), f"maps layout.py names but the C lacks: {set(py) - in_c}"
    for name in ("config", "policy", "flows", "counters", "fieldbits", "portbits", "addrclass"):
        assert name in py, f"layout.py has no entry for map {name}"


@pytest.mark.parametrize("name", sorted(MapSet.types(layout.Sizes())))
def test_map_key_and_value_agree_with_the_c(loaded_filter, name):
    key_t, val_t = MapSet.types(loaded_filter.sizes)[name]
    tbl = loaded_filter.bpf[name.encode()]
    leaf = tbl.Leaf
    if name in PERCPU:  # bcc's Leaf is one cell per CPU
        assert _is_array(leaf), f"{name}: bcc's per-CPU leaf is not an array"
        leaf = leaf._type_
    problems = layout_diff(key_t, tbl.Key, f"{name}.key") + layout_diff(val_t, leaf,
                                                                       f"{name}.value")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def probe_structs():
    """Structs no map of the program holds whole (the ring buffer's), put in arrays."""
    from bcc import BPF

    text = b"""
    #include "xdpgate_types.h"
    BPF_ARRAY(probe_sample_hdr, struct xg_sample_hdr, 1);
    BPF_ARRAY(probe_sample, struct xg_sample, 1);
    """
    b = BPF(text=text, cflags=[f"-I{loader.bpf_dir()}", *layout.Sizes().cflags()])
    yield b
    b.cleanup()


def test_sample_header_agrees_with_struct_xg_sample_hdr(probe_structs):
    problems = layout_diff(layout.SampleHdr, probe_structs[b"probe_sample_hdr"].Leaf,
                           "xg_sample_hdr")
    assert not problems, "\n".join(problems)


def test_a_sample_is_its_header_then_sample_bytes_of_packet(probe_structs):
    c = probe_structs[b"probe_sample"].Leaf
    assert c.data.offset == ct.sizeof(layout.SampleHdr)
    assert c.data.size == layout.Sizes().sample_bytes
    assert ct.sizeof(c) - c.data.offset - c.data.size < ct.alignment(layout.SampleHdr)


def test_the_layout_check_itself_sees_a_moved_field():
    class Moved(ct.Structure):
        _fields_ = [(n, t) for n, t in layout.FlowKey._fields_ if n != "proto"] + [("proto",
                                                                                    ct.c_uint8)]
    assert any("proto: offset" in p for p in layout_diff(Moved, layout.FlowKey, "k"))


# ---- constants and enums ----------------------------------------------------------

def c_constants() -> dict[str, int]:
    """#define NAME EXPR and enum members of xdpgate_consts.h, evaluated in order."""
    text = re.sub(r"/\*.*?\*/", "", CONSTS_H.read_text(), flags=re.S)
    env: dict[str, int] = {}

    def ev(expr: str) -> int:
        expr = re.sub(r"(?<=\d)[uU]?[lL]*\b", "", expr.strip()).replace("/", "//")
        return int(eval(expr, {"__builtins__": {}}, dict(env)))  # noqa: S307 (our own header)

    pos = 0
    tokens = re.finditer(r"^\s*#define\s+(XG_\w+)\s+(.+?)\s*$|enum\s+\w+\s*\{(.*?)\};", text,
                         flags=re.M | re.S)
    for m in tokens:
        if m.group(1):
            env[m.group(1)] = ev(m.group(2))
        else:
            for item in m.group(3).split(","):
                if "=" in item:
                    n, v = item.split("=", 1)
                    env[n.strip()] = ev(v)
        pos = m.end()
    assert pos and env, "nothing parsed from xdpgate_consts.h"
    return env


C = c_constants()

ENUMS: dict[str, tuple[type[enum.IntEnum], str | None]] = {
    "XG_ACT_": (layout.Action, None),
    "XG_V_": (layout.Verdict, "V_MAX"),
    "XG_R_": (layout.Reason, "R_MAX"),
    "XG_TUN_": (layout.Tunnel, None),
    "XG_FF_": (layout.FlowFlag, None),
    "XG_E_": (layout.Event, "E_MAX"),
    "XG_W_": (layout.W, None),
}
@pytest.mark.parametrize("prefix", list(ENUMS))
def test_enum_values_agree_with_the_c(prefix):
    py_enum, max_name = ENUMS[prefix]
    c_vals = {n[len(prefix):]: v for n, v in C.items() if n.startswith(prefix)
              and n[len(prefix):] not in ("TUNNEL_DEPTH",)}
    if prefix == "XG_TUN_":
        c_vals = {n: v for n, v in c_vals.items() if n != "MAX"}
    c_max = c_vals.pop("MAX", None)
    py_vals = {m.name: int(m.value) for m in py_enum}
    if max_name is None and "MAX" in py_vals and c_max is not None:
        c_vals["MAX"] = c_max
    assert py_vals == c_vals, f"{py_enum.__name__} differs from {prefix}*"
    if max_name is not None:
        assert getattr(layout, max_name) == c_max, f"layout.{max_name} vs {prefix}MAX"


def test_rate_limit_codes_agree_with_the_c():
    assert (layout.RateUnit.BPS, layout.RateUnit.PPS) == (C["XG_RL_BPS"], C["XG_RL_PPS"])
    assert (layout.RatePer.RULE, layout.RatePer.FLOW) == (C["XG_RL_PER_RULE"],
                                                          C["XG_RL_PER_FLOW"])


@pytest.mark.parametrize("c_name,py_name", [
    ("XG_APP_MAX", "APP_MAX"), ("XG_CAT_MAX", "CAT_MAX"), ("XG_CALL_MAX", "CALL_MAX"),
    ("XG_TUN_MAX", "TUN_MAX"), ("XG_PORT_SLOTS", "PORT_SLOTS"), ("XG_PORT_NONE", "PORT_NONE"),
    ("XG_RULE_NONE", "RULE_NONE"), ("XG_FB_PROTO", "FB_PROTO"), ("XG_FB_APP", "FB_APP"),
    ("XG_FB_CAT", "FB_CAT"), ("XG_FB_CALL", "FB_CALL"), ("XG_FB_TUN", "FB_TUN"),
    ("XG_FB_WILD", "FB_WILD"), ("XG_FB_SIZE", "FB_SIZE"), ("XG_D_APP", "D_APP"),
    ("XG_D_CAT", "D_CAT"), ("XG_D_TUN", "D_TUN"), ("XG_D_CALL", "D_CALL"),
    ("XG_D_SIZE", "D_SIZE"), ("XG_HINT_BITS", "HINT_BITS"), ("XG_HINT_WORDS", "HINT_WORDS"),
    ("XG_HINT_MUL", "HINT_MUL"), ("XG_FLOW_WAYS", "FLOW_WAYS"), ("XG_WAY_BUSY", "WAY_BUSY"),
    ("XG_SEEN_SHIFT", "SEEN_SHIFT"), ("XG_HASH_MUL", "HASH_MUL"), ("XG_HASH_MUL2", "HASH_MUL2"),
    ("XG_A4_WORDS", "A4_WORDS"),
    ("XG_A4_SPILL", "A4_SPILL"), ("XG_PFX_PREFIX", "PFX_PREFIX"), ("XG_PFX_BASE", "PFX_BASE"),
])
def test_constant_agrees_with_the_c(c_name, py_name):
    assert getattr(layout, py_name) == C[c_name], f"layout.{py_name} vs {c_name}"


SIZE_KNOBS = {"XG_FLOW_MAX": "flow_max", "XG_RULE_MAX": "rule_max",
              "XG_ADDRCLASS_MAX": "addrclass_max", "XG_LPM4_MAX": "lpm4_max",
              "XG_LPM6_MAX": "lpm6_max", "XG_TUNNEL_DEPTH": "tunnel_depth",
              "XG_SAMPLE_BYTES": "sample_bytes", "XG_RINGBUF_PAGES": "ringbuf_pages",
              "XG_EXPECT_MAX": "expect_max", "XG_MAILBOX_MAX": "mailbox_max"}


def test_load_time_sizes_default_as_in_the_c_and_reach_the_compiler():
    text = CONSTS_H.read_text()
    knobs = set(re.findall(r"#ifndef\s+(XG_\w+)", text)) - {"XDPGATE_CONSTS_H"}
    internal = {"XG_IPV6_EXT_MAX", "XG_GTP_EXT_MAX"}  # parser bounds, not operator sizes
    assert knobs - internal == set(SIZE_KNOBS), "a -D knob is missing from Sizes (or stale)"
    s = layout.Sizes()
    flags = " ".join(s.cflags())
    for c_name, field in SIZE_KNOBS.items():
        assert getattr(s, field) == C[c_name], f"Sizes.{field} default vs {c_name}"
        assert f"-D{c_name}={getattr(s, field)}" in flags, f"{c_name} not passed by cflags()"
    assert s.rule_words == C["XG_RULE_WORDS"]


def test_tail_call_slots_agree_with_the_c():
    assert loader.STAGES == {"xdpgate_level": C["XG_PROG_LEVEL"],
                             "xdpgate_decide": C["XG_PROG_DECIDE"]}


def test_counter_arrays_are_sized_from_the_same_constants(loaded_filter):
    b = loaded_filter.bpf
    assert b[b"counters"].max_entries == C["XG_R_MAX"] * C["XG_V_MAX"]
    assert b[b"events"].max_entries == C["XG_E_MAX"]
    assert b[b"dims"].max_entries == layout.D_SIZE
    assert b[b"fieldbits"].max_entries == 2 * layout.FB_SIZE
    assert b[b"portbits"].max_entries == 2 * layout.PORT_SLOTS
