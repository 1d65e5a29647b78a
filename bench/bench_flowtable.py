"""What the flow table costs, by design: the floor program (common.FLOOR_C) with its table swapped.

The floor is parse + canonical key + flow table + counters, no policy. Here the same program
is built four ways, in the same run:
  - none:       the key is built and not looked up (parse and key alone);
  - lru:        a BPF LRU hash, shared LRU lists: xdpgate's flow table until 2026-12-02, and
                the floor that bench_datapath and bench_droprate measure;
  - lru-percpu: the same with BPF_F_NO_COMMON_LRU (per-CPU LRU lists; each CPU can then hold
                only flow_max / possible CPUs of the flows it creates);
  - setassoc:   an 8-way set-associative table in a BPF array, with its own seeded hash and
                least-recently-seen replacement within a set (array lookups are inlined by
                the verifier; no kernel hash, no LRU lists). The probe xdpgate's table grew
                from; it lacks that table's compare-and-swap claim of the way it writes.

Each table is filled past capacity first (1.5x flow_max new flows), so new flows evict, as
on a loaded link. Established: one frame with repeat (its entry hot). New: every run a new
flow (common.FlowGen, its cost into a bare program subtracted). Medians over --rounds, all
programs attached to an idle veth in a namespace of our own.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_flowtable   [--flow-max N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow-max", type=int, default=2097152)
    ap.add_argument("--repeat", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    C.require_root()
    from scapy.all import IP, TCP, raw

    frame = raw(C.eth() / IP(src="10.1.2.3", dst="10.9.8.7") / TCP(sport=40000, dport=443,
                                                                    flags="A"))
    rnd = random.Random(1)
    sources = [(bytes([10, rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255)]),
                rnd.randrange(1024, 60000)) for _ in range(65536)]
    with C.Lab("xft") as lab:
        dev = lab.spare_veth("S")
        bare = C.BareProg()
        progs = {t: C.floor_prog(args.flow_max, t) for t in C.FLOOR_TABLES}
        gen = C.FlowGen(False, sources, bare.fd)
        try:
            C.attach_fd(lab.ns_a, dev, gen.fd)
            for t, p in progs.items():
                if t != "none":
                    gen.target(p.fd)
                    C.test_run_ns(gen.fd, frame, args.flow_max + args.flow_max // 2)
            est: dict[str, list[int]] = {}
            new: dict[str, list[int]] = {}
            cases = [("bare", bare.fd)] + [(t, p.fd) for t, p in progs.items()]
            for _ in range(args.rounds):
                for name, fd in cases:
                    C.attach_fd(lab.ns_a, dev, fd)
                    est.setdefault(name, []).append(C.test_run_ns(fd, frame, args.repeat)[1])
                    C.attach_fd(lab.ns_a, dev, gen.fd)
                    gen.target(fd)
                    new.setdefault(name, []).append(C.test_run_ns(gen.fd, frame, args.repeat)[1])
        finally:
            gen.close()
            for p in progs.values():
                p.close()
            bare.close()
    med = {k: statistics.median(v) for k, v in est.items()}
    gen_bare = statistics.median(new["bare"])
    med_new = {k: statistics.median(v) - gen_bare for k, v in new.items() if k != "bare"}
    b = med["bare"]
    C.log(f"bare XDP_DROP: {b:.0f} ns; flow_max {args.flow_max}, tables filled past capacity")
    C.log(f"{'table':<12}{'est ns':>8}{'x bare':>8}{'new ns':>8}")
    for t in C.FLOOR_TABLES:
        C.log(f"{t:<12}{med[t]:>8.0f}{med[t] / b:>8.2f}{med_new[t]:>8.0f}")
    out = {"bare_ns": b}
    for t in C.FLOOR_TABLES:
        tag = t.replace("-", "_")
        out[f"{tag}_est_over_bare"] = med[t] / b
        out[f"{tag}_new_ns"] = med_new[t]
    out["setassoc_est_over_lru"] = med["setassoc"] / med["lru"]
    out["setassoc_new_over_lru"] = med_new["setassoc"] / med_new["lru"]
    out["lru_percpu_new_over_lru"] = med_new["lru-percpu"] / med_new["lru"]
    out["flow_max"] = args.flow_max
    print(C.kv_line(out))


if __name__ == "__main__":
    main()
