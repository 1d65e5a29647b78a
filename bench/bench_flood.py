"""A spoofed flood from a blocklist: what it costs per packet and what it leaves of the live
flows, with and without `stateless_drops`.

Setup (all in this run): xdpgate loaded with Sizes(flow_max=--flow-max) and a policy whose one
rule drops sources in a blocklist of --prefixes random IPv4 prefixes (/24-/32); the flow table
pre-filled with --live live flows (half the table by default; kept shares are of those the
fill placed). The flood: common.FlowGen runs
the first packet of a new flow per test-run pass (TCP SYN, its source rewritten from 65,536
addresses inside the blocklist, the port advancing on every pass over them), --flood packets a
round, first into a bare XDP_DROP (the generator's own cost, subtracted) and then into xdpgate.
Rounds alternate `stateless_drops: false` (every flood flow gets an entry) and `true`; the
table is filled afresh before each round.

Printed per mode: ns per flood packet (medians over --rounds) and the share of a sample of the
live flows still in the table after the flood. Last line: name=value pairs.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_flood   [--flood N --rounds N ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from bench.bench_datapath import gen_sources, prefill_flows  # noqa: E402
from xdpgate.control import layout  # noqa: E402


def new_flows(flt) -> int:
    return flt.maps["events"].counters()[layout.Event.FLOW_NEW][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=100_000)
    ap.add_argument("--flow-max", type=int, default=262_144)
    ap.add_argument("--live", type=int, default=131_072, help="live flows in the table")
    ap.add_argument("--flood", type=int, default=1_000_000, help="flood packets a round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    C.require_root()
    t_start = time.perf_counter()
    C.log(f"# bench_flood: {args.prefixes} blocklisted prefixes, flow_max {args.flow_max}, "
          f"{args.live} live flows, {args.flood} flood packets a round, {args.rounds} rounds, "
          f"kernel {os.uname().release}")
    lines = C.random_prefixes(args.prefixes, v6_share=0.0)[0]
    tmp = tempfile.TemporaryDirectory(prefix="xgb-flood-")
    blocklist = Path(tmp.name) / "blocklist.txt"
    blocklist.write_text("\n".join(lines) + "\n")
    sizes = layout.Sizes(flow_max=args.flow_max)

    def policy(stateless: bool) -> dict:
        return {"default": "allow", "stateless_drops": stateless,
                "sets": {"blocklist": {"file": str(blocklist)}},
                "rules": [{"name": "blocklist", "match": {"src_set": "blocklist"},
                           "action": "drop"}]}

    from scapy.layers.inet import IP, TCP

    frame = bytes(C.eth() / IP(src=lines[0].split("/")[0], dst="10.99.0.2")
                  / TCP(sport=1024, dport=443, flags="S"))
    bare = flt = gen = None
    res: dict[str, dict[str, list[float]]] = {m: {"ns": [], "kept": [], "new": []}
                                              for m in ("tracked", "stateless")}
    with C.Lab("fl", two_ns=False) as lab:
        try:
            bare = C.BareProg()
            flt = C.load_xdpgate(sizes)
            C.attach_fd(lab.ns_a, lab.a, flt.prog_fd)
            C.attach_fd(lab.ns_a, lab.b, bare.fd)
            pol = C.Policy(flt)
            pol.config(sample_pkts=0, fail_closed=0)
            compiled = {m: pol.compile(policy(m == "stateless")) for m in res}
            gen = C.FlowGen(False, gen_sources(lines, False, 1 << 16, seed=5, outside=False,
                                                  n_nets=20000), bare.fd)
            C.attach_fd(lab.ns_a, lab.spare_veth("g"), gen.fd)
            ft = flt.maps.flowtable
            for r in range(args.rounds):
                for mode in res:
                    pol.apply_compiled(compiled[mode])
                    ft.clear()
                    sample, _ = prefill_flows([ft], args.live, seed=3 + r)
                    sample = [k for k in sample if ft.get(k) is not None]  # placed (sets fill)
                    new0 = new_flows(flt)
                    gen.target(bare.fd)
                    base = C.test_run_ns(gen.fd, frame, args.flood)[1]
                    gen.target(flt.prog_fd)
                    rv, ns = C.test_run_ns(gen.fd, frame, args.flood)
                    assert rv == 1, f"the flood was not dropped (XDP action {rv})"
                    res[mode]["ns"].append(ns - base)
                    res[mode]["kept"].append(sum(ft.get(k) is not None for k in sample)
                                             / len(sample))
                    res[mode]["new"].append(new_flows(flt) - new0)
                    C.log(f"round {r} {mode}: {ns - base:.1f} ns/packet, live flows kept "
                          f"{res[mode]['kept'][-1]:.1%}, flow entries made "
                          f"{res[mode]['new'][-1]}")
        finally:
            if flt is not None:
                flt.close()
            for x in (gen, bare):
                if x is not None:
                    x.close()
            tmp.cleanup()
    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in res.items()}
    C.log("")
    for m, d in med.items():
        C.log(f"{m:9s}: {d['ns']:.1f} ns per flood packet, live flows kept {d['kept']:.1%}, "
              f"entries made {d['new']:.0f} of {args.flood}")
    C.log(f"runtime {time.perf_counter() - t_start:.0f}s")
    print(C.kv_line({
        "tracked_ns": med["tracked"]["ns"], "stateless_ns": med["stateless"]["ns"],
        "stateless_over_tracked": med["stateless"]["ns"] / med["tracked"]["ns"],
        "tracked_kept": med["tracked"]["kept"], "stateless_kept": med["stateless"]["kept"],
        "live": args.live, "flood": args.flood, "flow_max": args.flow_max}))


if __name__ == "__main__":
    main()
