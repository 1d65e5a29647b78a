"""The data path's map layouts and constants, mirrored from bpf/xdpgate_types.h and
bpf/xdpgate_consts.h. tests/datapath/test_layout.py checks every size, offset and
enum value here against what bcc builds from the C, so a drift fails the suite.

Sizes that the loader can override with -D (flow table, rule slots, ...) live in
`Sizes`; everything else is fixed.
"""

from __future__ import annotations

import ctypes as ct
import enum
import functools
from dataclasses import dataclass

u8, u16, u32, u64 = ct.c_uint8, ct.c_uint16, ct.c_uint32, ct.c_uint64

APP_MAX = 1024
CAT_MAX = 16
CALL_MAX = 4
TUN_MAX = 8
PORT_SLOTS = 65537
PORT_NONE = 65536
RULE_NONE = 0xFFFF
A4_WORDS = 1 << 22  # IPv4 table: u64 words per bank, four /24 entries each (control/addr4.py)
A4_SPILL = 0x8000
PFX_PREFIX, PFX_BASE = 0, 1  # kinds of struct xg_pfx4_key
HINT_BITS = 24  # IPv6 address hint: bits per bank (see control/addrhint.py)
HINT_WORDS = 1 << (HINT_BITS - 6)
HINT_MUL = 0x9E3779B1
FLOW_WAYS = 8  # flow table: ways per set (struct xg_flowset; control/flowtable.py)
WAY_BUSY = 2
SEEN_SHIFT = 20
HASH_MUL = 0x9E3779B97F4A7C15
HASH_MUL2 = 0xD6E8FEB86659FD93  # the second set of a flow (bpf/flowhash.h)


@dataclass(frozen=True)
class Sizes:
    """Load-time sizes (passed to the compiler as -D, defaults as in the C)."""

    flow_max: int = 262144
    rule_max: int = 256
    addrclass_max: int = 4096
    lpm4_max: int = 2097152
    lpm6_max: int = 1048576
    tunnel_depth: int = 1
    sample_bytes: int = 1500
    ringbuf_pages: int = 2048
    expect_max: int = 65536
    mailbox_max: int = 65536

    def __post_init__(self) -> None:
        if self.rule_max % 64 or not 64 <= self.rule_max <= 1024:
            raise ValueError("rule_max must be a multiple of 64 between 64 and 1024")
        if not 1 <= self.addrclass_max <= A4_SPILL:
            raise ValueError(f"addrclass_max must be between 1 and {A4_SPILL}")
        if self.tunnel_depth not in (0, 1, 2):
            raise ValueError("tunnel_depth must be 0, 1 or 2")
        if self.ringbuf_pages & (self.ringbuf_pages - 1):
            raise ValueError("ringbuf_pages must be a power of two")
        if self.flow_max % FLOW_WAYS or not FLOW_WAYS <= self.flow_max <= 1 << 30:
            raise ValueError(f"flow_max must be a multiple of {FLOW_WAYS} between {FLOW_WAYS} "
                             f"and {1 << 30}")
        for name in ("flow_max", "addrclass_max", "lpm4_max", "lpm6_max", "sample_bytes",
                     "expect_max", "mailbox_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def rule_words(self) -> int:
        return self.rule_max // 64

    def cflags(self) -> list[str]:
        return [
            f"-DXG_FLOW_MAX={self.flow_max}",
            f"-DXG_RULE_MAX={self.rule_max}",
            f"-DXG_ADDRCLASS_MAX={self.addrclass_max}",
            f"-DXG_LPM4_MAX={self.lpm4_max}",
            f"-DXG_LPM6_MAX={self.lpm6_max}",
            f"-DXG_TUNNEL_DEPTH={self.tunnel_depth}",
            f"-DXG_SAMPLE_BYTES={self.sample_bytes}",
            f"-DXG_RINGBUF_PAGES={self.ringbuf_pages}",
            f"-DXG_EXPECT_MAX={self.expect_max}",
            f"-DXG_MAILBOX_MAX={self.mailbox_max}",
        ]

    def fb_size(self) -> int:
        return FB_WILD + W.MAX


class Action(enum.IntEnum):
    ALLOW = 0
    DROP = 1
    REJECT = 2
    RATE_LIMIT = 3
    NONE = 0xFF


class Verdict(enum.IntEnum):
    PASS = 0
    DROP = 1
    TX = 2


V_MAX = 3


class Reason(enum.IntEnum):
    RULE = 0
    DEFAULT = 1
    FLOW = 2
    RATE_LIMIT = 3
    FRAGMENT = 4
    UNPARSED = 5
    MALFORMED = 6
    TUNNEL_MALFORMED = 7
    FAIL_MODE = 8
    REJECT_FALLBACK = 9
    INTERNAL = 10


R_MAX = 11


class Tunnel(enum.IntEnum):
    NONE = 0
    GTPU = 1
    GRE = 2
    VXLAN = 3
    IPIP = 4


class FlowFlag(enum.IntFlag):
    CLASSIFIED = 1
    EXPECTED = 2
    SAMPLE_LOST = 4
    KEEP_SAMPLING = 8
    SAMPLED = 16


CF_KEEP_SAMPLING = 1


class Event(enum.IntEnum):
    FLOW_NEW = 0
    SAMPLE_SENT = 1
    SAMPLE_LOST = 2
    CLASS_APPLIED = 3
    EXPECT_HIT = 4
    REJECT_SENT = 5
    SAMPLE_BARE = 6
    FLOW_EVICTED = 7
    FLOW_NOSLOT = 8
    DROP_UNTRACKED = 9


E_MAX = 16


class RateUnit(enum.IntEnum):
    BPS = 1
    PPS = 2


class RatePer(enum.IntEnum):
    RULE = 0
    FLOW = 1


class W(enum.IntEnum):
    """Wildcard-mask slots in the fieldbits region XG_FB_WILD."""

    VALID = 0
    PROTO = 1
    SPORT = 2
    DPORT = 3
    APORT = 4
    APP = 5
    CAT = 6
    CALL = 7
    TUN = 8
    TUNID = 9
    CLASS = 10
    MAX = 16


FB_PROTO = 0
FB_APP = FB_PROTO + 256
FB_CAT = FB_APP + APP_MAX
FB_CALL = FB_CAT + CAT_MAX
FB_TUN = FB_CALL + CALL_MAX
FB_WILD = FB_TUN + TUN_MAX
FB_SIZE = FB_WILD + W.MAX

D_APP = 0
D_CAT = D_APP + APP_MAX
D_TUN = D_CAT + CAT_MAX
D_CALL = D_TUN + TUN_MAX
D_SIZE = D_CALL + CALL_MAX


class FlowKey(ct.Structure):
    _fields_ = [
        ("addr_a", u8 * 16),
        ("addr_b", u8 * 16),
        ("port_a", u16),
        ("port_b", u16),
        ("proto", u8),
        ("tun_type", u8),
        ("pad", u16),
        ("tun_id", u32),
    ]


class Flow(ct.Structure):
    _fields_ = [
        ("last_ns", u64),
        ("pkts", u64 * 2),
        ("bytes", u64 * 2),
        ("pol_gen", u32),
        ("rule", u16 * 2),
        ("action", u8 * 2),
        ("tcp_flags", u8 * 2),
        ("init_is_a", u8),
        ("flags", u8),
        ("nsampled", u8),
        ("category", u8),
        ("app", u16),
        ("call", u8),
        ("override", u8),
        ("pad", u32),
        ("first_ns", u64),
        ("tb_tokens", u64),
        ("tb_last_ns", u64),
        ("outer_a", u8 * 16),
        ("outer_b", u8 * 16),
    ]


class FlowSlot(ct.Structure):
    _fields_ = [
        ("key", FlowKey),
        ("pad", u32),
        ("val", Flow),
        ("spare", u8 * 24),
    ]


class FlowSet(ct.Structure):
    _fields_ = [("way", u64 * FLOW_WAYS)]


class Class(ct.Structure):
    _fields_ = [
        ("app", u16),
        ("category", u8),
        ("call", u8),
        ("override", u8),
        ("confidence", u8),
        ("flags", u16),
    ]


class ExpectKey(ct.Structure):
    _fields_ = [
        ("addr", u8 * 16),
        ("port", u16),
        ("proto", u8),
        ("tun_type", u8),
        ("tun_id", u32),
    ]


class Expect(ct.Structure):
    _fields_ = [("expires_ns", u64), ("cls", Class)]


class Pfx4Key(ct.Structure):
    _fields_ = [("bank", u8), ("len", u8), ("kind", u8), ("pad", u8),
                ("addr", u32)]  # network order: read it as bytes (addr4_of)


def addr4_of(key: Pfx4Key) -> int:
    """The address of a pfx4 key as an int."""
    return int.from_bytes(bytes(key)[4:8], "big")


class Lpm6Key(ct.Structure):
    _fields_ = [("prefixlen", u32), ("bank", u8), ("addr", u8 * 16), ("pad", u8 * 3)]


class Rule(ct.Structure):
    _fields_ = [
        ("action", u8),
        ("rl_unit", u8),
        ("rl_per", u8),
        ("pad", u8 * 5),
        ("rl_rate", u64),
        ("rl_burst", u64),
    ]


class Bucket(ct.Structure):
    _fields_ = [("tokens", u64), ("last_ns", u64)]


class Policy(ct.Structure):
    _fields_ = [
        ("default_action", u8),
        ("frag_action", u8),
        ("unparsed_action", u8),
        ("tunnels", u8),
        ("flow_first", u8),
        ("stateless", u8),
        ("class_rule_min", u16),
        ("nrules", u32),
        ("fields", u32),
    ]


class Config(ct.Structure):
    _fields_ = [
        ("gen", u32),
        ("sample_pkts", u32),
        ("heartbeat_ns", u64),
        ("away_ns", u64),
        ("fail_closed", u8),
        ("pad", u8 * 7),
        ("flow_seed", u64),
    ]


class Counter(ct.Structure):
    _fields_ = [("pkts", u64), ("bytes", u64)]


class TunidKey(ct.Structure):
    _fields_ = [("bank", u32), ("tun_id", u32)]


@functools.cache
def bits_type(rule_words: int) -> type[ct.Structure]:
    """struct xg_bits for a given XG_RULE_MAX."""
    return type(f"Bits{rule_words}", (ct.Structure,), {"_fields_": [("w", u64 * rule_words)]})


@functools.cache
def addrclass_type(rule_words: int) -> type[ct.Structure]:
    b = bits_type(rule_words)
    fields = [(n, b) for n in ("src", "dst", "any", "osrc", "odst")]
    return type(f"AddrClass{rule_words}", (ct.Structure,), {"_fields_": fields})


@functools.cache
def portbits_type(rule_words: int) -> type[ct.Structure]:
    b = bits_type(rule_words)
    fields = [(n, b) for n in ("src", "dst", "any")]
    return type(f"PortBits{rule_words}", (ct.Structure,), {"_fields_": fields})


class SampleHdr(ct.Structure):
    _fields_ = [
        ("ts_ns", u64),
        ("key", FlowKey),
        ("ifindex", u32),
        ("wire_len", u32),
        ("cap_len", u16),
        ("dir", u8),
        ("seq", u8),
        ("outer_src", u8 * 16),
        ("outer_dst", u8 * 16),
    ]


# map name -> (key type, value type); value types that depend on Sizes are resolved
# by maps.py. Used by the layout test to compare against bcc's view of the C.
FIXED_LAYOUTS: dict[str, tuple[type, type]] = {
    "config": (u32, Config),
    "policy": (u32, Policy),
    "rules": (u32, Rule),
    "flows": (u32, FlowSlot),
    "flowsets": (u32, FlowSet),
    "mailbox": (FlowKey, Class),
    "expect": (ExpectKey, Expect),
    "expect_live": (u32, u64),
    "addr4": (u32, u64),
    "pfx4": (Pfx4Key, u32),
    "lpm6": (Lpm6Key, u32),
    "addrhint": (u32, u64),
    "counters": (u32, Counter),
    "rule_hits": (u32, Counter),
    "dims": (u32, Counter),
    "events": (u32, Counter),
    "buckets": (u32, Bucket),
}
