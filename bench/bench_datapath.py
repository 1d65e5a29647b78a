"""Per-packet cost of the data path through BPF_PROG_TEST_RUN, as a ratio to a bare XDP_DROP.

Setup (all in this run):
  - xdpgate loaded through the real loader with Sizes(flow_max=--flow-max), a policy of --rules
    rules (first match wins) over --sets sets holding --prefixes random prefixes in total
    (IPv4 /24-/32 and 10% IPv6), written as set files and read back through sets.resolve, so
    the path is the real one (parse_lines + compile_policy + Applier.apply);
  - the flow table pre-filled with --flows flows through maps.flowtable.set_many (FlowKey/Flow);
  - a bare `return XDP_DROP;` program compiled with bcc;
  - both programs attached (native mode) to an idle veth pair inside a namespace of our own,
    so the kernel's XDP dispatcher already holds them and test runs do not swap it (an
    unattached XDP program costs ~10-30 ms per test-run call for the dispatcher update).

What is measured (ns per packet, median over --rounds rounds):
  - established: frames of flows already in the table (v4/v6 x TCP/UDP, --est-frames per
    class), each run with repeat=--repeat. Repeat re-runs the same frame, so after the first
    run this is the cached-verdict path (flow lookup + update + counters); the flow entry and
    the maps' hot lines stay in cache, which test-run cannot avoid.
  - new: distinct frames of flows not in the table (--new-frames per class, half with a source
    inside a set), each run ONCE (repeat=1), so every run parses, misses the flow table,
    inserts the flow and evaluates the rules (LPM lookups on 1M prefixes, port and field
    bitmaps). A repeat=1 run also carries the test-run timer's fixed cost; it is measured on the
    bare program the same way and subtracted:  new = xdpgate(r=1) - (bare(r=1) - bare(r=N)).
    Both raw and corrected values are printed. The created flows are deleted before the next
    round, so every round measures new flows again.
  - mix: the weighted mean: --new-share of packets are first packets of new flows (default
    5%, i.e. flows of 20 packets on average), the rest established; v4:v6 = 70:30 and
    TCP:UDP = 70:30 in both.
  - 1 rule vs 256 rules: the same measurement with a one-rule policy over the same sets (so
    the LPM tries hold the same prefixes), alternating the two policies round by round.

Targets (issue 3): mix <= 3x bare per packet; 1 rule vs 256 rules within 10%.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_datapath   [--quick | --repeat N ...]
"""

from __future__ import annotations

import argparse
import ctypes as ct
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.control import layout  # noqa: E402
from xdpgate.control.maps import Map  # noqa: E402

V4_SHARE, TCP_SHARE = 0.7, 0.7
CLASSES = [(v, p) for v in (4, 6) for p in ("tcp", "udp")]


def class_weight(v: int, proto: str) -> float:
    return (V4_SHARE if v == 4 else 1 - V4_SHARE) * (TCP_SHARE if proto == "tcp" else 1 - TCP_SHARE)


def make_policy(nrules: int, set_names: list[str], set_files: dict[str, str],
                early_exit: bool = False) -> dict:
    """A policy of nrules rules over the sets. The benchmark traffic (dst ports 443/53/8443,
    sources in and out of the sets) mostly ends at the default (allow), some of it at rules
    near the end, so the first-match search cannot stop early.

    One rule: it has conditions on the fields the many rules have (protocol, the three port
    fields, both addresses: the fields a policy names set the cost, since the data path skips
    the others, not how many rules it has), with values every benchmark packet's protocol and
    ports hold, so it looks up both addresses of every packet, as the many rules do; with
    `early_exit` it names a port none of the traffic uses, so evaluation ends before any
    address lookup."""
    sets = {n: {"file": set_files[n]} for n in set_names}
    rules = []
    if nrules == 1 and early_exit:
        rules.append({"name": "r0", "match": {"src_set": set_names, "proto": "tcp",
                                                "dst_port": 23}, "action": "drop"})
    elif nrules == 1:
        rules.append({"name": "r0", "match": {"src_set": set_names, "dst_set": set_names,
                                                "proto": ["tcp", "udp"], "src_port": "1-65535",
                                                "dst_port": "1-65535", "port": "1-65535"},
                      "action": "drop"})
    else:
        rnd = random.Random(7)
        for i in range(nrules - 2):
            kind = i % 8
            m: dict = {}
            if kind == 0:
                m = {"src_set": [set_names[i % len(set_names)]], "proto": "tcp",
                     "dst_port": 1000 + i}
            elif kind == 1:
                m = {"dst_set": [set_names[(i + 1) % len(set_names)]], "proto": "udp",
                     "dst_port": f"{2000 + i * 10}-{2005 + i * 10}"}
            elif kind == 2:
                m = {"ip_set": [set_names[(i + 2) % len(set_names)]], "port": [3000 + i, 3500 + i]}
            elif kind == 3:
                m = {"src": [f"198.{i % 256}.{rnd.randrange(256)}.0/24",
                             f"2001:db8:{i:x}::/48"], "proto": "tcp"}
            elif kind == 4:
                m = {"dst": f"192.0.{i % 256}.0/24", "src_port": f"{10000 + i}-{10100 + i}"}
            elif kind == 5:
                m = {"proto": "icmp", "src_set": [set_names[i % len(set_names)]]}
            elif kind == 6:
                m = {"proto": ["tcp", "udp"], "dst_port": 4000 + i,
                     "ip": f"100.{64 + i % 64}.0.0/16"}
            else:
                m = {"src_set": [set_names[i % len(set_names)]],
                     "dst_set": [set_names[(i + 3) % len(set_names)]], "proto": "udp",
                     "dst_port": 5000 + i}
            rules.append({"name": f"r{i}", "match": m, "action": "drop" if i % 3 else "allow"})
        # the last two rules are where some of the benchmark traffic lands
        rules.append({"name": "set-sources-to-8443", "match": {"src_set": set_names, "proto": "tcp",
                                                                 "dst_port": 8443},
                      "action": "allow"})
        rules.append({"name": "dns-from-sets", "match": {"src_set": set_names, "proto": "udp",
                                                           "dst_port": 53}, "action": "allow"})
    return {"default": "allow", "sets": sets, "rules": rules}


def prefill_flows(tables: list, n: int, seed: int = 3) -> tuple[list, float]:
    """Write n random canonical flows (70% IPv4, 70% TCP) into each flow table (xdpgate's
    FlowTable, or the floor's hash map of FlowKey -> Flow) with set_many; returns the first few keys (for frames) and the seconds
    the writes took."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n4 = int(n * V4_SHARE)
    addr = np.zeros((n, 2, 16), dtype=np.uint8)
    addr[:n4, :, 10:12] = 0xFF
    addr[:n4, :, 12:16] = rng.integers(0, 256, size=(n4, 2, 4), dtype=np.uint8)
    addr[n4:, :, 0:2] = (0x20, 0x01)
    addr[n4:, :, 2:16] = rng.integers(0, 256, size=(n - n4, 2, 14), dtype=np.uint8)
    ports = rng.integers(1024, 65536, size=(n, 2), dtype=np.uint16)
    proto = np.where(rng.random(n) < TCP_SHARE, 6, 17).astype(np.uint8)
    # canonical order as the C does it: four native-endian u32 words, then host-order ports
    wa = addr[:, 0].copy().view("<u4")
    wb = addr[:, 1].copy().view("<u4")
    diff = wa != wb
    first = diff.argmax(axis=1)
    idx = np.arange(n)
    a_lt = wa[idx, first] < wb[idx, first]
    same = ~diff.any(axis=1)
    a_lt = np.where(same, ports[:, 0] <= ports[:, 1], a_lt)
    swap = ~a_lt
    addr[swap] = addr[swap][:, ::-1]
    ports[swap] = ports[swap][:, ::-1]
    rec = np.zeros(n, dtype=np.dtype([("a", "u1", 16), ("b", "u1", 16), ("pa", ">u2"),
                                      ("pb", ">u2"), ("proto", "u1"), ("tt", "u1"),
                                      ("pad", "<u2"), ("tid", "<u4")]))
    rec["a"], rec["b"] = addr[:, 0], addr[:, 1]
    rec["pa"], rec["pb"] = ports[:, 0], ports[:, 1]
    rec["proto"] = proto
    raw = rec.tobytes()
    assert rec.itemsize == ct.sizeof(layout.FlowKey)
    t0 = time.perf_counter()
    ks = ct.sizeof(layout.FlowKey)
    keys = [layout.FlowKey.from_buffer_copy(raw, i * ks) for i in range(n)]
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    v = layout.Flow(first_ns=now - 10**9, last_ns=now, init_is_a=1, flags=layout.FlowFlag.CLASSIFIED,
                    app=0, category=0, override=layout.Action.NONE)
    v.pkts[0] = v.pkts[1] = 10
    v.bytes[0] = v.bytes[1] = 1000
    v.action[0] = v.action[1] = layout.Action.NONE
    v.rule[0] = v.rule[1] = layout.RULE_NONE
    for t in tables:
        t.set_many(keys, [v] * n)
    return keys[:: max(1, n // 4096)], time.perf_counter() - t0


def key_frame(k: layout.FlowKey) -> bytes:
    """A frame of a flow key's flow, sent by endpoint a."""
    import ipaddress

    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    a, b = ipaddress.IPv6Address(bytes(k.addr_a)), ipaddress.IPv6Address(bytes(k.addr_b))
    pa = int.from_bytes(k.port_a.to_bytes(2, "little"), "big")
    pb = int.from_bytes(k.port_b.to_bytes(2, "little"), "big")
    l4 = TCP(sport=pa, dport=pb, flags="A") if k.proto == 6 else UDP(sport=pa, dport=pb)
    if a.ipv4_mapped:
        l3 = IP(src=str(a.ipv4_mapped), dst=str(b.ipv4_mapped))
    else:
        l3 = IPv6(src=str(a), dst=str(b))
    return bytes(C.eth() / l3 / l4 / (b"x" * 16))


def new_frames(per_class: int, set_lines: list[str], seed: int) -> dict:
    """Distinct frames of flows that are not in the table, per (ip version, proto); half of
    them have a source inside a set prefix, and dst ports hit the policy's last rules."""
    import ipaddress

    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    rnd = random.Random(seed)
    v4 = [ipaddress.ip_network(s) for s in rnd.sample([s for s in set_lines if ":" not in s], 2000)]
    v6 = [ipaddress.ip_network(s) for s in rnd.sample([s for s in set_lines if ":" in s], 2000)]
    out: dict = {}
    for ver, proto in CLASSES:
        frames, keys = [], []
        for i in range(per_class):
            if i % 2 == 0:
                net = rnd.choice(v4 if ver == 4 else v6)
                src = str(net[rnd.randrange(net.num_addresses)] if net.num_addresses > 1
                          else net.network_address)
            else:
                src = (f"172.{16 + rnd.randrange(16)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                       if ver == 4 else f"fd12:{rnd.getrandbits(16):x}::{rnd.getrandbits(16):x}")
            dst = (f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
                   if ver == 4 else f"2001:db8:ffff::{rnd.getrandbits(16):x}")
            sport = 20000 + rnd.randrange(40000)
            dport = rnd.choice((443, 53, 8443) if proto == "udp" else (443, 80, 8443))
            l4 = (TCP(sport=sport, dport=dport, flags="S") if proto == "tcp"
                  else UDP(sport=sport, dport=dport))
            l3 = IP(src=src, dst=dst) if ver == 4 else IPv6(src=src, dst=dst)
            frames.append(bytes(C.eth() / l3 / l4 / (b"x" * 16)))
            keys.append(C.flow_key(src, dst, sport, dport, 6 if proto == "tcp" else 17)[0])
        out[(ver, proto)] = (frames, keys)
    return out


def gen_sources(set_lines: list[str], v6: bool, n: int, seed: int, outside: bool = True,
                n_nets: int = 4000) -> list[tuple[bytes, int]]:
    """Sources for FlowGen: (address bytes, port); half inside one of `n_nets` set prefixes,
    half outside (all inside without `outside`)."""
    import ipaddress

    rnd = random.Random(seed)
    nets = [ipaddress.ip_network(x) for x in rnd.sample([x for x in set_lines
                                                          if (":" in x) == v6], n_nets)]
    out = []
    for i in range(n):
        if i % 2 == 0 or not outside:
            net = rnd.choice(nets)
            a = net.network_address + rnd.randrange(net.num_addresses)
        else:
            a = (ipaddress.IPv6Address((0xFD12 << 112) | rnd.getrandbits(64))
                 if v6 else ipaddress.IPv4Address((172 << 24) | (16 << 16) | rnd.getrandbits(20)))
        out.append((a.packed, 20000 + rnd.randrange(40000)))
    return out


def est_frames(keys: list, per_class: int) -> dict:
    out: dict = {c: [] for c in CLASSES}
    for k in keys:
        ver = 4 if bytes(k.addr_a)[:12] == b"\0" * 10 + b"\xff\xff" else 6
        c = (ver, "tcp" if k.proto == 6 else "udp")
        if len(out[c]) < per_class:
            out[c].append(key_frame(k))
    return out


def measure(fd: int, est: dict, new: dict, repeat: int, gens: dict, bare_fd: int,
            flows=None) -> dict:
    """One round of program `fd`: per-class established (repeat), new flows with warm maps
    (FlowGen, repeat: the program minus the generator's own cost into a bare program) and,
    given its flow table, new flows with cold caches (one test-run call per flow), in ns per
    packet."""
    res = {}
    for c in CLASSES:
        res[("est",) + c] = C.per_packet_ns(fd, est[c], repeat, rounds=1)[0]
    for c in CLASSES:
        gen = gens[c[0]]
        tot = 0.0
        for fr in new[c][0][:3]:
            gen.target(fd)
            tx = C.test_run_ns(gen.fd, fr, repeat)[1]
            gen.target(bare_fd)
            tb = C.test_run_ns(gen.fd, fr, repeat)[1]
            tot += tx - tb
        res[("warm",) + c] = tot / 3  # plus the bare program's own cost, added by the caller
    for c in CLASSES if flows is not None else ():
        frames, keys = new[c]
        flows.delete_many(keys)  # make them new again (they were created by the previous round)
        tot = 0
        for fr in frames:
            rv, d = C.test_run_ns(fd, fr, 1)
            tot += d
        res[("new",) + c] = tot / len(frames)
    return res


def mix_of(res: dict, new_share: float, bare_ns: float) -> tuple[float, float, float]:
    """(mix, established, new) in ns per packet; new flows as FlowGen measures them."""
    est = sum(class_weight(*c) * res[("est",) + c] for c in CLASSES)
    new = sum(class_weight(*c) * res[("warm",) + c] for c in CLASSES) + bare_ns
    return (1 - new_share) * est + new_share * new, est, new


def cold_of(res: dict, corr: float) -> float:
    """New flows, one test-run call each (cold caches), less the call's fixed cost."""
    return sum(class_weight(*c) * (res[("new",) + c] - corr) for c in CLASSES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--sets", type=int, default=8)
    ap.add_argument("--rules", type=int, default=256)
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--flow-max", type=int, default=2_097_152)
    ap.add_argument("--repeat", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--est-frames", type=int, default=4, help="established frames per class")
    ap.add_argument("--new-frames", type=int, default=2000, help="new-flow frames per class")
    ap.add_argument("--new-share", type=float, default=0.05)
    ap.add_argument("--sample-pkts", type=int, default=0,
                    help="config.sample_pkts (0: classifier sampling off, as without a classifier)")
    ap.add_argument("--quick", action="store_true", help="100k prefixes/flows, fewer rounds")
    args = ap.parse_args()
    if args.quick:
        args.prefixes, args.flows, args.rounds, args.repeat = 100_000, 100_000, 3, 20_000
        args.new_frames = 300
    C.require_root()
    t_start = time.perf_counter()

    C.log(f"# bench_datapath: {args.rules} rules, {args.prefixes} prefixes in {args.sets} sets, "
          f"{args.flows} flows (flow_max {args.flow_max}), repeat {args.repeat}, "
          f"{args.rounds} rounds, kernel {os.uname().release}, {os.cpu_count()} cpus")
    lines, n4, n6 = C.random_prefixes(args.prefixes)
    tmp = tempfile.TemporaryDirectory(prefix="xgb-dp-")
    names = [f"set{i}" for i in range(args.sets)]
    files = {}
    for i, n in enumerate(names):  # deal prefixes round-robin so every set has v4 and v6
        p = Path(tmp.name) / f"{n}.txt"
        p.write_text("\n".join(lines[i::args.sets]) + "\n")
        files[n] = str(p)
    sizes = layout.Sizes(flow_max=args.flow_max, rule_max=max(256, -(-args.rules // 64) * 64))

    bare = flt = floor = None
    gens: dict = {}
    with C.Lab("dp", two_ns=False) as lab:
        try:
            bare = C.BareProg()
            t0 = time.perf_counter()
            flt = C.load_xdpgate(sizes)
            C.log(f"loaded xdpgate in {time.perf_counter() - t0:.1f}s")
            C.attach_fd(lab.ns_a, lab.a, flt.prog_fd)
            C.attach_fd(lab.ns_a, lab.b, bare.fd)
            floor = C.floor_prog(args.flow_max)
            C.attach_fd(lab.ns_a, lab.spare_veth("fl"), floor.fd)
            pol = C.Policy(flt)
            pol.config(sample_pkts=args.sample_pkts, fail_closed=0)
            p_many = make_policy(args.rules, names, files)
            p_one = make_policy(1, names, files)
            p_exit = make_policy(1, names, files, early_exit=True)
            tm = pol.apply(p_many)
            C.log(f"policy {args.rules} rules: " + ", ".join(f"{k} {v:.1f}s" for k, v in tm.items()))
            tm = pol.apply(p_one)
            C.log("policy 1 rule (other bank): " + ", ".join(f"{k} {v:.1f}s" for k, v in tm.items()))
            # compiled once each (same sets, so the same address classes); the rounds below
            # switch between them with Applier.apply, which writes only the differences
            w_many, w_one, w_exit = pol.compile(p_many), pol.compile(p_one), pol.compile(p_exit)
            floor_flows = Map("floor", floor.b[b"flows"].map_fd, layout.FlowKey, layout.Flow)
            keys, t_fill = prefill_flows([flt.maps.flowtable, floor_flows], args.flows)
            C.log(f"flow table pre-filled with {args.flows} flows in {t_fill:.1f}s")
            est = est_frames(keys, args.est_frames)
            new = new_frames(args.new_frames, lines, seed=11)
            for ver in (4, 6):
                gens[ver] = C.FlowGen(ver == 6, gen_sources(lines, ver == 6, 1 << 16, seed=ver),
                                      bare.fd)
                C.attach_fd(lab.ns_a, lab.spare_veth(f"g{ver}"), gens[ver].fd)

            bare_fr = est[(4, "tcp")][0]
            # sanity: what the mix gets
            verdicts = {}
            for c in CLASSES:
                for fr in new[c][0][:50]:
                    rv, _ = C.test_run_ns(flt.prog_fd, fr, 1)
                    verdicts[rv] = verdicts.get(rv, 0) + 1
            for c in CLASSES:
                flt.maps.flowtable.delete_many(new[c][1])
            C.log(f"new-flow sample verdicts (XDP action: count): {verdicts}")

            rows: dict[str, list] = {"bare": [], "bare_r1": []}
            order = [("many", w_many), ("one", w_one), ("exit", w_exit)]
            per: dict[str, list] = {name: [] for name, _ in order + [("floor", None)]}
            for r in range(args.rounds):
                rows["bare"].append(C.per_packet_ns(bare.fd, [bare_fr], args.repeat, 1)[0])
                r1 = [C.test_run_ns(bare.fd, bare_fr, 1)[1] for _ in range(len(CLASSES) * args.new_frames)]
                rows["bare_r1"].append(statistics.fmean(r1))
                for name, w in order[r % 3:] + order[:r % 3]:  # rotate which goes first
                    pol.apply_compiled(w)
                    per[name].append(measure(flt.prog_fd, est, new, args.repeat, gens, bare.fd,
                                             flt.maps.flowtable))
                per["floor"].append(measure(floor.fd, est, new, args.repeat, gens, bare.fd))
            bare_ns = statistics.median(rows["bare"])
            bare_r1 = statistics.median(rows["bare_r1"])
            corr = bare_r1 - bare_ns  # the fixed cost a repeat=1 run adds (timer, bh toggle)

            def med(name: str) -> dict:
                return {k: statistics.median(d[k] for d in per[name]) for k in per[name][0]}

            m_many, m_one, m_exit, m_floor = med("many"), med("one"), med("exit"), med("floor")
            C.log(f"\nbare XDP_DROP: {bare_ns:.1f} ns/pkt (repeat {args.repeat}); "
                  f"{bare_r1:.1f} ns with repeat=1 -> fixed test-run cost {corr:.1f} ns")
            C.log(f"{'class':<14}{'rules=' + str(args.rules):>12}{'1 rule':>10}{'1, exits':>10}"
                  "   (ns/pkt; warm: less the bare program; new: cold, raw incl. fixed cost)")
            for kind in ("est", "warm", "new"):
                for c in CLASSES:
                    k = (kind,) + c
                    C.log(f"{kind + ' v' + str(c[0]) + ' ' + c[1]:<14}{m_many[k]:>12.1f}"
                          f"{m_one[k]:>10.1f}{m_exit[k]:>10.1f}")
            mix_m, est_m, new_m = mix_of(m_many, args.new_share, bare_ns)
            mix_1, est_1, new_1 = mix_of(m_one, args.new_share, bare_ns)
            mix_x, est_x, new_x = mix_of(m_exit, args.new_share, bare_ns)
            mix_f, est_f, new_f = mix_of(m_floor, args.new_share, bare_ns)
            cold_m, cold_1 = cold_of(m_many, corr), cold_of(m_one, corr)
            C.log("\nweighted (v4:v6 70:30, tcp:udp 70:30):")
            C.log(f"  established {est_m:.1f} ns ({est_m / bare_ns:.2f}x bare), "
                  f"new flow {new_m:.1f} ns ({new_m / bare_ns:.2f}x bare), "
                  f"mix with {args.new_share:.0%} new {mix_m:.1f} ns ({mix_m / bare_ns:.2f}x bare)")
            C.log(f"  new flow with cold caches (one call per flow, less {corr:.1f} ns fixed "
                  f"cost): {cold_m:.1f} ns; with 1 rule {cold_1:.1f} ns")
            C.log(f"  1 rule (both address lookups, as the {args.rules}): established {est_1:.1f}, "
                  f"new {new_1:.1f}, mix {mix_1:.1f} ns; {args.rules}/1: mix {mix_m / mix_1:.3f}, "
                  f"new {new_m / new_1:.3f}, new cold {cold_m / cold_1:.3f}")
            C.log(f"  1 rule whose port excludes the traffic before any address lookup: "
                  f"established {est_x:.1f}, new {new_x:.1f}, mix {mix_x:.1f} ns; "
                  f"{args.rules}/1: mix {mix_m / mix_x:.3f}, new {new_m / new_x:.3f}")
            C.log(f"  floor (parse + the same flow table, no policy): established {est_f:.1f} ns "
                  f"({est_f / bare_ns:.2f}x bare), new {new_f:.1f} ns, mix {mix_f:.1f} ns "
                  f"({mix_f / bare_ns:.2f}x bare); xdpgate over floor: mix {mix_m / mix_f:.2f}, "
                  f"established {est_m / est_f:.2f}, new {new_m / new_f:.2f}")
            ev = flt.maps["events"].counters()
            C.log(f"  flows created during the run: {ev[layout.Event.FLOW_NEW][0] if ev else 0}")
            C.log(f"  targets: mix <= 3x bare: {'met' if mix_m <= 3 * bare_ns else 'NOT met'}; "
                  f"1 vs {args.rules} rules within 10%: "
                  f"{'met' if abs(mix_m / mix_1 - 1) <= 0.10 else 'NOT met'} (mix), "
                  f"{'met' if abs(new_m / new_1 - 1) <= 0.10 else 'NOT met'} (new flows)")
            C.log(f"  runtime {time.perf_counter() - t_start:.0f}s")
            C.log(C.kv_line({
                "bare_ns": bare_ns, "mix_ns": mix_m, "est_ns": est_m, "new_ns": new_m,
                "mix_over_bare": mix_m / bare_ns, "est_over_bare": est_m / bare_ns,
                "new_over_bare": new_m / bare_ns,
                "floor_mix_over_bare": mix_f / bare_ns, "floor_est_over_bare": est_f / bare_ns,
                "mix_over_floor": mix_m / mix_f,
                "new_cold_ns": cold_m, "new_cold_over_bare": cold_m / bare_ns,
                f"rules{args.rules}_over_rules1_mix": mix_m / mix_1,
                f"rules{args.rules}_over_rules1_new": new_m / new_1,
                f"rules{args.rules}_over_rules1exit_mix": mix_m / mix_x,
                f"rules{args.rules}_over_rules1exit_new": new_m / new_x,
                "prefixes": args.prefixes, "flows": args.flows, "repeat": args.repeat,
            }))
        finally:
            if flt is not None:
                flt.close()
            for g in gens.values():
                g.close()
            for p in (bare, floor):
                if p is not None:
                    p.close()
            tmp.cleanup()


if __name__ == "__main__":
    main()
