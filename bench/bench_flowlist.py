"""Listing a big flow table: `xdpgate flows` / GET /api/v1/flows on --flows flows.

Setup: xdpgate loaded with Sizes(flow_max=--flow-max), the table pre-filled with --flows random
flows (bench_datapath's prefill, through FlowTable.set_many). Measured, same run, medians over
--rounds: observe.flows(limit=100) (the snapshot of the mapped arrays, filtered and ranked with
numpy) against the baseline of walking every entry as ctypes records and ranking them with
heapq (how observe.flows worked before), for no filter and for a port filter.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_flowlist   [--flows N --flow-max N]
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from bench.bench_datapath import prefill_flows  # noqa: E402
from xdpgate.control import layout, observe  # noqa: E402


def walk(ft, port: int | None, limit: int = 100) -> list:
    """The baseline: every entry as ctypes records, filtered and ranked in Python."""
    nport = ((port & 0xFF) << 8) | (port >> 8) if port is not None else None
    cand = [(k, f) for k, f in ft.items()
            if nport is None or nport in (k.port_a, k.port_b)]
    return heapq.nlargest(limit, cand, key=lambda t: t[1].bytes[0] + t[1].bytes[1])


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--flow-max", type=int, default=2_097_152)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    flt = C.load_xdpgate(layout.Sizes(flow_max=args.flow_max))
    try:
        ft = flt.maps.flowtable
        keys, t_fill = prefill_flows([ft], args.flows)
        held = len(ft)
        C.log(f"# bench_flowlist: {held} flows held of {args.flows} written "
              f"(flow_max {args.flow_max}) in {t_fill:.1f}s")
        port = ((keys[0].port_a & 0xFF) << 8) | (keys[0].port_a >> 8)
        res: dict[str, list[float]] = {"list": [], "walk": [], "list_port": [], "walk_port": []}
        for _ in range(args.rounds):
            res["list"].append(timed(lambda: observe.flows(flt.maps, limit=100)))
            res["walk"].append(timed(lambda: walk(ft, None)))
            res["list_port"].append(timed(lambda: observe.flows(flt.maps, port=port, limit=100)))
            res["walk_port"].append(timed(lambda: walk(ft, port)))
        m = {k: statistics.median(v) for k, v in res.items()}
        C.log(f"top 100 by bytes: {m['list']:.2f} s (entry by entry {m['walk']:.2f} s); "
              f"port {port}: {m['list_port']:.2f} s (entry by entry {m['walk_port']:.2f} s)")
        kv = {"flows": held, "list_s": m["list"], "walk_s": m["walk"],
              "list_over_walk": m["list"] / m["walk"], "list_port_s": m["list_port"],
              "list_port_over_walk": m["list_port"] / m["walk_port"]}
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in kv.items()))
    finally:
        flt.close()


if __name__ == "__main__":
    main()
