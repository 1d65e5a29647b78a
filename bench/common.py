"""Shared helpers for the benchmarks in bench/ (not tests: they print figures, never assert times).

- Lab: uniquely named network namespaces joined by a veth pair, always removed (use it as a
  context manager); nothing is done to the host's own interfaces or addresses.
- Programs: a bare XDP_DROP program (optionally counting) compiled with bcc, xdpgate loaded
  through the real loader, attaching either to a veth inside a lab namespace.
- Policy: compile + apply through the real path (compile_policy + Applier), as tests/harness.py does.
- Timing: BPF_PROG_TEST_RUN with repeat, medians over rounds.
- Data: random prefixes (IPv4 /24-/32, IPv6), random flow keys, frames built with scapy.
- Output: the last line of every bench is `name=value` pairs (`kv_line`).

Every bench is run as root with the project's venv:
    /opt/xdpgate/venv/bin/python -m bench.bench_datapath   (from the repository root)
"""

from __future__ import annotations

import ctypes as ct
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/bench_x.py` as well as `python -m bench.bench_x`
    sys.path.insert(0, str(ROOT))

from xdpgate.control import bpfsys, layout, loader  # noqa: E402
from xdpgate.control import compile as comp  # noqa: E402
from xdpgate.control import policy as pol  # noqa: E402
from xdpgate.control import sets as xsets  # noqa: E402
from xdpgate.control.apply import Applier  # noqa: E402
from xdpgate.control.lab import netns_socket  # noqa: E402

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
XDP_FLAGS_DRV_MODE = 4
BPF_F_TEST_XDP_LIVE_FRAMES = 2



def log(*a: Any) -> None:
    print(*a, flush=True)


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("benchmarks need root (bpf, network namespaces)")


def kv_line(pairs: dict[str, Any]) -> str:
    """The bench's last line: name=value pairs, floats with 4 significant digits."""
    out = []
    for k, v in pairs.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        out.append(f"{k}={v}")
    return " ".join(out)


def sh(*args: str, check: bool = True, input: str | None = None,
       capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, input=input, text=True,
                          capture_output=capture)


# ---- lab: namespaces and veths ----------------------------------------------

def unique(tag: str) -> str:
    """A name unique to this process: xgb<pid%100000><tag> (<= 15 chars for interfaces)."""
    return f"xgb{os.getpid() % 100000}{tag}"[:15]


@dataclass
class Lab:
    """Namespaces joined by one veth pair: `a` in ns_a, `b` in ns_b (ns_b = ns_a if one ns).

    Addresses are inside the namespaces only (10.x / fd00:x). Removed on exit, whatever
    happened; deleting a namespace also removes its veths and any XDP programs on them.
    """

    tag: str
    two_ns: bool = True
    ns_a: str = ""
    ns_b: str = ""
    a: str = ""
    b: str = ""
    addr_a: str = "10.99.0.1"
    addr_b: str = "10.99.0.2"
    addr6_a: str = "fd00:99::1"
    addr6_b: str = "fd00:99::2"
    mac_a: str = "02:00:00:99:00:01"
    mac_b: str = "02:00:00:99:00:02"
    _made: list[str] = field(default_factory=list)

    def __enter__(self) -> Lab:
        from xdpgate.control import lab as control_lab

        self.ns_a = unique(self.tag + "a")
        self.ns_b = unique(self.tag + "b") if self.two_ns else self.ns_a
        self.a, self.b = unique(self.tag + "A"), unique(self.tag + "B")
        control_lab.sweep()  # labs of benches and tests killed before they cleaned up
        control_lab.record(self.ns_a, list(dict.fromkeys((self.ns_a, self.ns_b))))
        try:
            for ns in dict.fromkeys((self.ns_a, self.ns_b)):
                sh("ip", "netns", "add", ns)
                self._made.append(ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            # create the pair inside ns_a, then move b: the host's namespace is never touched
            sh("ip", "-n", self.ns_a, "link", "add", self.a, "address", self.mac_a, "type", "veth",
               "peer", "name", self.b, "address", self.mac_b)
            if self.two_ns:
                sh("ip", "-n", self.ns_a, "link", "set", self.b, "netns", self.ns_b)
            for ns, dev, a4, a6 in ((self.ns_a, self.a, self.addr_a, self.addr6_a),
                                    (self.ns_b, self.b, self.addr_b, self.addr6_b)):
                sh("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
                sh("ip", "-n", ns, "addr", "add", f"{a6}/64", "dev", dev, "nodad")
                sh("ip", "-n", ns, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        from xdpgate.control import lab as control_lab

        for ns in reversed(self._made):
            sh("ip", "netns", "del", ns, check=False)
        self._made.clear()
        control_lab.forget(self.ns_a)

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def ifindex(self, side: str) -> int:
        ns, dev = (self.ns_a, self.a) if side == "a" else (self.ns_b, self.b)
        out = sh("ip", "-n", ns, "-o", "link", "show", "dev", dev).stdout
        return int(out.split(":", 1)[0])

    def spare_veth(self, tag: str) -> str:
        """Another (idle) veth pair in ns_a, to attach one more program to; returns one end.
        Gone with the namespace."""
        dev = unique(self.tag + tag)
        sh("ip", "-n", self.ns_a, "link", "add", dev, "type", "veth", "peer", "name", dev + "p")
        for d in (dev, dev + "p"):
            sh("ip", "-n", self.ns_a, "link", "set", d, "up")
        return dev

    def ns_of(self, side: str) -> str:
        return self.ns_a if side == "a" else self.ns_b

    def dev_of(self, side: str) -> str:
        return self.a if side == "a" else self.b


def attach_fd(ns: str, dev: str, fd: int, flags: int = XDP_FLAGS_DRV_MODE) -> None:
    """Attach an XDP program fd (any program) to a device in a namespace; fd -1 detaches."""
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        ipr.link("set", index=idx,
                 IFLA_XDP={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})


# run the calling thread inside a namespace for a while (sockets; live-frame test runs
# that redirect to a veth look devices up in the caller's namespace)
in_netns = netns_socket


# ---- programs ---------------------------------------------------------------

BARE_DROP_C = "int bare_drop(struct xdp_md *ctx) { return XDP_DROP; }\n"

COUNTING_DROP_C = """
BPF_PERCPU_ARRAY(drops, u64, 1);
int bare_drop(struct xdp_md *ctx) {
    u32 z = 0;
    u64 *c = drops.lookup(&z);
    if (c)
        *c += 1;
    return XDP_DROP;
}
"""


class BareProg:
    """A tiny bcc XDP program (XDP_DROP, optionally counting its drops per CPU)."""

    def __init__(self, counting: bool = False, text: str | None = None, fn: str = "bare_drop",
                 cflags: list[str] | None = None) -> None:
        from bcc import BPF

        self.counting = counting
        self.b = BPF(text=(text or (COUNTING_DROP_C if counting else BARE_DROP_C)).encode(),
                     cflags=cflags or [])
        self.fd = self.b.load_func(fn.encode(), BPF.XDP).fd

    def drops(self) -> int:
        return sum(self.b[b"drops"][ct.c_int(0)]) if self.counting else 0

    def news(self) -> int:
        """Flows the floor program added (its `news` counter)."""
        return sum(self.b[b"news"][ct.c_int(0)])

    def close(self) -> None:
        self.b.cleanup()


FLOWGEN_C = """
struct src { u8 addr[ALEN]; u16 sport; };
BPF_PROG_ARRAY(next, 1);
BPF_PERCPU_ARRAY(iter, u64, 1);
BPF_ARRAY(srcs, struct src, NSRC);
int flowgen(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + L4_OFF + 2 > end)
        return XDP_ABORTED;
    u32 z = 0;
    u64 *c = iter.lookup(&z);
    if (!c)
        return XDP_ABORTED;
    u64 n = (*c)++;
    u32 i = n & (NSRC - 1);
    struct src *e = srcs.lookup(&i);
    if (!e)
        return XDP_ABORTED;
    __builtin_memcpy(data + SRC_OFF, e->addr, ALEN);
    *(u16 *)(data + L4_OFF) = bpf_htons(e->sport + (u16)(n / NSRC));
    next.call(ctx, 0);
    return XDP_ABORTED;
}
"""


class FlowGen:
    """Every packet a new flow, inside one BPF_PROG_TEST_RUN: a small XDP program rewrites
    the frame's source address and port (test-run with repeat runs the same buffer again,
    so the change persists) from a table of `sources` (with the port advanced on every
    pass over the table), then tail-calls the program under test. The cost of the rewrite
    and the tail call is measured the same way into a bare XDP_DROP and subtracted by the
    caller. The maps the program under test keeps hot stay warm, as on a busy link; what
    a new flow touches for the first time (its flow bucket, trie nodes) is cold."""

    def __init__(self, v6: bool, sources: list[tuple[bytes, int]], target_fd: int) -> None:
        from bcc import BPF

        nsrc = 1 << max(1, (len(sources) - 1).bit_length())
        alen = 16 if v6 else 4
        self.b = BPF(text=FLOWGEN_C.encode(), cflags=[
            f"-DALEN={alen}", f"-DNSRC={nsrc}", f"-DSRC_OFF={14 + (8 if v6 else 12)}",
            f"-DL4_OFF={14 + (40 if v6 else 20)}"])
        self.fd = self.b.load_func(b"flowgen", BPF.XDP).fd
        t = self.b[b"srcs"]
        for i in range(nsrc):
            addr, sport = sources[i % len(sources)]
            v = t.Leaf()
            ct.memmove(ct.addressof(v), addr, alen)
            v.sport = sport
            t[ct.c_int(i)] = v
        self.target(target_fd)

    def target(self, fd: int) -> None:
        self.b[b"next"][ct.c_int(0)] = ct.c_int(fd)

    def close(self) -> None:
        self.b.cleanup()


CHURN_C = """
BPF_PROG_ARRAY(next, 1);
BPF_ARRAY(iter, u64, 1);
int churngen(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + 14 + 20 + 2 > end)
        return XDP_ABORTED;
    u32 z = 0;
    u64 *c = iter.lookup(&z);
    if (!c)
        return XDP_ABORTED;
    u64 n = (*c)++, cyc = n / CYCLE, pos = n % CYCLE, id;
    u8 *a = data + 14 + 12;
    u16 port;
    if (pos < TRANS) { /* a flow of one packet, never seen again */
        id = cyc * TRANS + pos;
        a[0] = 11;
        port = 1024 + (u16)(id >> 24);
    } else { /* the next live flow, round-robin */
        id = (cyc * (CYCLE - TRANS) + pos - TRANS) % LIVE;
        a[0] = 10;
        port = 40000;
    }
    a[1] = id >> 16;
    a[2] = id >> 8;
    a[3] = id;
    *(u16 *)(data + 14 + 20) = bpf_htons(port);
    next.call(ctx, 0);
    return XDP_ABORTED;
}
"""


class ChurnGen:
    """A link's flows inside BPF_PROG_TEST_RUN: `live` long flows, each sending a packet in
    turn (round-robin), among which flows of a single packet arrive, `trans` of every
    `cycle` packets. Rewrites the IPv4 frame's source (10.x.y.z for a live flow, 11.x.y.z
    and a port for a passing one) and tail-calls the program under test. A table keeps up
    when the live flows' packets find their entries: the new flows the program sees per
    round (`round_packets()` packets, each live flow once) are then the passing ones alone
    (`round_passing()`)."""

    def __init__(self, live: int, trans: int, cycle: int, target_fd: int) -> None:
        from bcc import BPF

        assert 0 <= trans < cycle and live < 1 << 24 and live % (cycle - trans) == 0
        self.live, self.trans, self.cycle = live, trans, cycle
        self.b = BPF(text=CHURN_C.encode(), cflags=[
            f"-DLIVE={live}ULL", f"-DTRANS={trans}ULL", f"-DCYCLE={cycle}ULL"])
        self.fd = self.b.load_func(b"churngen", BPF.XDP).fd
        self.target(target_fd)

    def round_packets(self) -> int:
        return self.live // (self.cycle - self.trans) * self.cycle

    def round_passing(self) -> int:
        return self.live // (self.cycle - self.trans) * self.trans

    def target(self, fd: int) -> None:
        self.b[b"next"][ct.c_int(0)] = ct.c_int(fd)

    def close(self) -> None:
        self.b.cleanup()


# The floor: what any flow-table filter pays per packet on this machine. Ethernet, IPv4 or
# IPv6 (no options, tags or extension headers), TCP/UDP ports, the same canonical 44-byte key
# and 120-byte entry in an LRU hash of the same size, the entry's counters, one per-CPU
# counter; no policy at all. Established and new flows are measured as for xdpgate.
# TABLE picks the flow table (FLOOR_TABLES); the floor proper is TABLE=1, the kernel's LRU
# hash (xdpgate's table until it became set-associative, as TABLE=3). bench_flowtable
# compares them.
FLOOR_TABLES = {"none": 0, "lru": 1, "lru-percpu": 2, "setassoc": 3}
FLOOR_C = r"""
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
struct key { u32 a[4]; u32 b[4]; u16 pa; u16 pb; u8 proto; u8 tt; u16 pad; u32 tid; };
struct val { u64 first_ns; u64 last_ns; u64 pkts[2]; u64 bytes[2]; u8 rest[72]; };
#if TABLE == 1
BPF_TABLE("lru_hash", struct key, struct val, flows, FLOW_MAX);
#elif TABLE == 2
BPF_F_TABLE("lru_hash", struct key, struct val, flows, FLOW_MAX, BPF_F_NO_COMMON_LRU);
#elif TABLE == 3
/* WAYS-way set-associative table in an array: the set is picked by a seeded multiply-xor
 * hash of the key; a set's header holds a tag (hash bits) and a last-seen time per way,
 * one cache line for 8 ways; a miss replaces an empty way or the least recently seen.
 * The design probe xdpgate's own table grew from (bpf/flowhash.h); this one has no
 * compare-and-swap claim of the way it writes. */
struct slot { struct key k; u32 tag; struct val v; };
struct set { u32 tag[WAYS]; u32 seen[WAYS]; };
BPF_ARRAY(tab, struct slot, FLOW_MAX);
BPF_ARRAY(sets, struct set, FLOW_MAX / WAYS);
static __always_inline u64 mix(u64 h, u64 v)
{
    h ^= v;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 31);
}
#endif
BPF_PERCPU_ARRAY(drops, u64, 1);
BPF_PERCPU_ARRAY(news, u64, 1); /* flows added (a packet that found no entry) */
static __always_inline void count_new(void)
{
    u32 z = 0;
    u64 *c = news.lookup(&z);
    if (c)
        *c += 1;
}
int floor_prog(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    struct key k __attribute__((aligned(8))) = {};
    u16 *ports;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return XDP_PASS;
        k.a[2] = k.b[2] = bpf_htonl(0xffff);
        k.a[3] = ip->saddr;
        k.b[3] = ip->daddr;
        k.proto = ip->protocol;
        ports = (void *)ip + ip->ihl * 4;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return XDP_PASS;
        __builtin_memcpy(k.a, &ip6->saddr, 16);
        __builtin_memcpy(k.b, &ip6->daddr, 16);
        k.proto = ip6->nexthdr;
        ports = (void *)(ip6 + 1);
    } else {
        return XDP_PASS;
    }
    if ((void *)(ports + 2) > end)
        return XDP_PASS;
    k.pa = ports[0];
    k.pb = ports[1];
    int swap = 0;
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        if (k.a[i] != k.b[i]) {
            swap = k.a[i] > k.b[i];
            break;
        }
        if (i == 3)
            swap = bpf_ntohs(k.pa) > bpf_ntohs(k.pb);
    }
    if (swap) {
        u32 t[4];
        __builtin_memcpy(t, k.a, 16);
        __builtin_memcpy(k.a, k.b, 16);
        __builtin_memcpy(k.b, t, 16);
        u16 p = k.pa;
        k.pa = k.pb;
        k.pb = p;
    }
    u64 now = bpf_ktime_get_coarse_ns(), len = end - data;
#if TABLE == 0
    asm volatile("" :: "r"(&k) : "memory"); /* the key is built, and used by nothing */
#elif TABLE == 3
    u64 *kw = (u64 *)&k;
    u64 h = HSEED;
#pragma unroll
    for (int i = 0; i < 5; i++)
        h = mix(h, kw[i]);
    h = mix(h, (u64)k.tid);
    u32 si = h & (FLOW_MAX / WAYS - 1), tag = (u32)(h >> 32) | 1, nows = now >> 20;
    struct set *s = sets.lookup(&si);
    if (!s)
        return XDP_PASS;
    int hit = 0, victim = 0;
    u32 oldest = 0xffffffff;
#pragma unroll
    for (int w = 0; w < WAYS; w++) {
        u32 t = s->tag[w];
        if (t == tag && !hit) {
            u32 idx = si * WAYS + w;
            struct slot *e = tab.lookup(&idx);
            if (e) {
                u64 *ew = (u64 *)&e->k, d = e->k.tid ^ k.tid;
#pragma unroll
                for (int i = 0; i < 5; i++)
                    d |= ew[i] ^ kw[i];
                if (!d) {
                    hit = 1;
                    e->v.last_ns = now;
                    e->v.pkts[swap & 1]++;
                    e->v.bytes[swap & 1] += len;
                    s->seen[w] = nows;
                }
            }
        }
        if (t == 0) {
            if (oldest) {
                oldest = 0;
                victim = w;
            }
        } else if (s->seen[w] < oldest) {
            oldest = s->seen[w];
            victim = w;
        }
    }
    if (!hit) {
        count_new();
        u32 w = victim & (WAYS - 1), idx = si * WAYS + w;
        struct slot *e = tab.lookup(&idx);
        if (e) {
            s->tag[w] = 0;
            e->k = k;
            __builtin_memset(&e->v, 0, sizeof(e->v));
            e->v.first_ns = e->v.last_ns = now;
            s->tag[w] = tag;
            s->seen[w] = nows;
        }
    }
#else
    struct val *v = flows.lookup(&k);
    if (v) {
        v->last_ns = now;
        v->pkts[swap]++;
        v->bytes[swap] += len;
    } else {
        struct val nv = {.first_ns = now, .last_ns = now};
        flows.update(&k, &nv);
        count_new();
    }
#endif
    u32 z = 0;
    u64 *c = drops.lookup(&z);
    if (c)
        *c += 1;
    return XDP_DROP;
}
"""


def floor_prog(flow_max: int, table: str = "lru", ways: int = 8) -> BareProg:
    """The floor program with a flow table of flow_max entries (counts its drops); `table`
    (FLOOR_TABLES) swaps the table for another design."""
    return BareProg(counting=True, text=FLOOR_C, fn="floor_prog",
                    cflags=[f"-DFLOW_MAX={flow_max}", f"-DTABLE={FLOOR_TABLES[table]}",
                            f"-DWAYS={ways}", f"-DHSEED={random.getrandbits(63)}ULL"])


def load_xdpgate(sizes: layout.Sizes) -> loader.Filter:
    return loader.load(sizes, pin=False)


class Policy:
    """Apply policies to a loaded filter through the real compile + apply path."""

    def __init__(self, flt: loader.Filter) -> None:
        self.f = flt
        self.ap = Applier(flt.maps)
        if not flt.adopted:  # as the controller does: new maps hold two empty banks
            self.ap.assume_empty()

    def apply(self, policy: pol.Policy | dict | str, sets: dict | None = None) -> dict[str, float]:
        """Returns seconds spent compiling and applying. `sets` (name -> prefixes) stands
        for sets.resolve(policy) when the caller has already parsed the set text."""
        if isinstance(policy, str):
            policy = pol.from_yaml(policy)
        elif isinstance(policy, dict):
            policy = pol.from_dict(policy)
        t0 = time.perf_counter()
        resolved = sets if sets is not None else xsets.resolve(policy)
        t1 = time.perf_counter()
        wanted = comp.compile_policy(policy, resolved, self.f.sizes, self.ap.classes)
        t2 = time.perf_counter()
        self.ap.apply(wanted)
        t3 = time.perf_counter()
        return {"resolve_s": t1 - t0, "compile_s": t2 - t1, "apply_s": t3 - t2}

    def compile(self, policy: dict) -> Any:
        """Compile once (sets resolved from their files), to apply again cheaply later."""
        p = pol.from_dict(policy)
        return comp.compile_policy(p, xsets.resolve(p), self.f.sizes, self.ap.classes)

    def apply_compiled(self, wanted: Any) -> float:
        t0 = time.perf_counter()
        self.ap.apply(wanted)
        return time.perf_counter() - t0

    def config(self, **fields: int) -> None:
        self.ap.write_config(**fields)


def counters(flt: loader.Filter) -> dict[tuple[int, int], tuple[int, int]]:
    """(reason, verdict) -> (pkts, bytes), summed over CPUs."""
    cells = flt.maps["counters"].counters()
    return {(i // layout.V_MAX, i % layout.V_MAX): c for i, c in enumerate(cells)}


def drops_of(flt: loader.Filter) -> int:
    return sum(p for (r, v), (p, _) in counters(flt).items() if v == layout.Verdict.DROP)


# ---- timing -----------------------------------------------------------------

def test_run_ns(fd: int, frame: bytes, repeat: int) -> tuple[int, int]:
    """(XDP action, ns per run) from one BPF_PROG_TEST_RUN."""
    rv, _, dur = bpfsys.test_run(fd, frame, repeat)
    return rv, dur


def per_packet_ns(fd: int, frames: list[bytes], repeat: int, rounds: int = 5) -> tuple[float, list]:
    """Mean over frames of the per-run ns, median over rounds (each round runs every frame
    `repeat` times). Returns (ns, per-round values)."""
    vals = []
    for _ in range(rounds):
        tot = 0.0
        for fr in frames:
            _, d = test_run_ns(fd, fr, repeat)
            tot += d
        vals.append(tot / len(frames))
    return statistics.median(vals), vals


def live_frames_run(fd: int, frame: bytes, repeat: int, ingress_ifindex: int,
                    batch_size: int = 64) -> None:
    """BPF_PROG_TEST_RUN in live-frame mode: the program's XDP_REDIRECT/XDP_TX really
    transmit (the kernel's own fast packet generator path, as xdp-trafficgen uses)."""

    class XdpMd(ct.Structure):
        _fields_ = [("data", ct.c_uint32), ("data_end", ct.c_uint32), ("data_meta", ct.c_uint32),
                    ("ingress_ifindex", ct.c_uint32), ("rx_queue_index", ct.c_uint32),
                    ("egress_ifindex", ct.c_uint32)]

    din = ct.create_string_buffer(frame, len(frame))
    md = XdpMd(data=0, data_end=len(frame), ingress_ifindex=ingress_ifindex)
    a = bpfsys._TestRun(prog_fd=fd, data_size_in=len(frame), data_in=ct.addressof(din),
                        repeat=repeat, ctx_size_in=ct.sizeof(md), ctx_in=ct.addressof(md),
                        flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch_size)
    bpfsys._call(bpfsys.PROG_TEST_RUN, a)


# ---- data -------------------------------------------------------------------

def random_prefixes(n: int, v6_share: float = 0.1, seed: int = 1) -> tuple[list[str], int, int]:
    """n distinct random prefixes as text: IPv4 /24-/32 and (v6_share of them) IPv6 /32-/128.

    Returns (lines, n_v4, n_v6): IPv4 lines first, each family sorted. Deterministic for a seed."""
    import socket

    import numpy as np

    rng = np.random.default_rng(seed)
    n6 = int(n * v6_share)
    n4 = n - n6
    packed = np.zeros(0, dtype=np.uint64)  # net << 6 | plen, unique
    while len(packed) < n4:
        k = int((n4 - len(packed)) * 1.1) + 64
        addrs = rng.integers(0, 1 << 32, size=k, dtype=np.uint64)
        plens = rng.integers(24, 33, size=k, dtype=np.uint64)
        masks = (np.uint64(0xFFFFFFFF) << (np.uint64(32) - plens)) & np.uint64(0xFFFFFFFF)
        packed = np.unique(np.concatenate([packed, ((addrs & masks) << np.uint64(6)) | plens]))
    packed = np.sort(rng.permutation(packed)[:n4])
    nets = (packed >> np.uint64(6)).tolist()
    plens = (packed & np.uint64(63)).tolist()
    lines = [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/{p}"
             for a, p in zip(nets, plens)]
    out6: set[tuple[int, int]] = set()
    rnd = random.Random(seed)
    while len(out6) < n6:
        plen = rnd.choice((32, 48, 56, 64, 64, 64, 128))
        net = (0x2001_0db8 << 96 | rnd.getrandbits(96)) if rnd.random() < 0.5 else \
            (0x2a00 << 112 | rnd.getrandbits(112))
        net &= ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
        out6.add((net, plen))
    lines += [f"{socket.inet_ntop(socket.AF_INET6, a.to_bytes(16, 'big'))}/{p}"
              for a, p in sorted(out6)]
    return lines, n4, n6


def eth(src: str = "02:00:00:00:00:01", dst: str = "02:00:00:00:00:02"):
    from scapy.layers.l2 import Ether

    return Ether(src=src, dst=dst)


def addr16(ip: str) -> bytes:
    from xdpgate.control.maps import addr16 as a16

    return a16(ip)


def flow_key(src: str, dst: str, sport: int, dport: int, proto: int, tun_type: int = 0,
             tun_id: int = 0) -> tuple[layout.FlowKey, bool]:
    """The data path's canonical key for a packet, and whether src is endpoint a.

    Mirrors xdpgate_decide: addresses are compared as four native-endian (x86: little-endian)
    u32 words, then ports in host order."""
    s, d = addr16(src), addr16(dst)
    a_is_src = sport <= dport
    for i in range(4):
        ws = int.from_bytes(s[4 * i:4 * i + 4], "little")
        wd = int.from_bytes(d[4 * i:4 * i + 4], "little")
        if ws != wd:
            a_is_src = ws < wd
            break
    k = layout.FlowKey()
    if a_is_src:
        k.addr_a[:], k.addr_b[:], k.port_a, k.port_b = list(s), list(d), _hton16(sport), _hton16(dport)
    else:
        k.addr_a[:], k.addr_b[:], k.port_a, k.port_b = list(d), list(s), _hton16(dport), _hton16(sport)
    k.proto, k.tun_type, k.tun_id = proto, tun_type, tun_id
    return k, a_is_src


def _hton16(v: int) -> int:
    return int.from_bytes(v.to_bytes(2, "big"), "little")


# ---- the baselines: ipset and nftables sets of the same prefixes -------------------------

def unique_set(tag: str) -> str:
    return f"xgb{os.getpid()}{tag}"[:31]


def time_ipset(ns: str, lines: list[str], tag: str) -> float:
    """Seconds for `ipset restore` of the prefixes into two hash:net sets (v4, v6) in `ns`."""
    n4, n6 = unique_set(tag + "4"), unique_set(tag + "6")
    maxelem = max(65536, len(lines) * 2)
    script = [f"create {n4} hash:net family inet maxelem {maxelem} hashsize 1048576",
              f"create {n6} hash:net family inet6 maxelem {maxelem} hashsize 1048576"]
    script += [f"add {n6 if ':' in s else n4} {s}" for s in lines]
    text = "\n".join(script) + "\n"
    try:
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", ns, "ipset", "restore", input=text)
        return time.perf_counter() - t0
    finally:
        for n in (n4, n6):
            sh("ip", "netns", "exec", ns, "ipset", "destroy", n, check=False)


def time_nft(ns: str, lines: list[str], tag: str, timeout: float) -> float | None:
    """Seconds for `nft -f` of the prefixes as two interval sets in `ns`; None on timeout."""
    table = unique_set(tag)
    v4 = [s for s in lines if ":" not in s]
    v6 = [s for s in lines if ":" in s]
    text = (f"table inet {table} {{\n"
            f"  set s4 {{ type ipv4_addr; flags interval; auto-merge; elements = {{ "
            + ", ".join(v4) + " } }\n"
            "  set s6 { type ipv6_addr; flags interval; auto-merge; elements = { "
            + ", ".join(v6) + " } }\n}\n")
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", ns, "timeout", str(int(timeout)), "nft", "-f", path)
        return time.perf_counter() - t0
    except Exception as e:
        log(f"nft -f failed or timed out: {str(e)[:200]}")
        return None
    finally:
        os.unlink(path)
        sh("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table, check=False)
