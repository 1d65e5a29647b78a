"""How many of a link's live flows the flow table keeps, against the kernel's LRU hash.

A link carries long flows (calls, downloads) among flows of a packet or a few (DNS,
scans, a flood). Every live flow sends a packet in turn; between them pass flows that are
never seen again. A table keeps up when each live flow's packet finds its entry; a live
flow that lost its entry is added again, losing its counters and its class (the
classifier's label of a call is gone until the classifier sees it again).

common.ChurnGen drives that traffic inside BPF_PROG_TEST_RUN into, in the same run:
  - xdpgate (default allow, no sampling), its table of --flow-max entries: two sets of
    8 ways per flow, the longest unseen of 16 replaced;
  - the floor with the kernel's LRU hash of the same size (an exact LRU keeps every live
    flow while live + passing flows of one round fit);
  - the floor with one 8-way set per flow (common.FLOOR_TABLES "setassoc"): the design
    xdpgate's table had until 2026-12-02.
For each mix (live flows as a share of --flow-max; passing flows per live packet) the
generator runs --warm rounds (each live flow once a round), then one measured round:
live flows lost = flows added in that round - passing flows in it; kept = 1 - lost/live.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_capacity   [--flow-max N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.control import layout  # noqa: E402
from xdpgate.control.layout import Event  # noqa: E402

# (live flows as a share of the table, passing flows, per this many packets)
MIXES = [(0.25, 1, 2), (0.5, 0, 1), (0.5, 1, 5), (0.5, 1, 3), (0.5, 1, 2),
         (0.75, 0, 1), (0.75, 1, 5), (0.9, 0, 1)]


def kept_share(gen: C.ChurnGen, frame: bytes, news, warm: int) -> float:
    """Share of the live flows whose packet found its entry in the measured round."""
    for _ in range(warm):
        C.test_run_ns(gen.fd, frame, gen.round_packets())
    before = news()
    C.test_run_ns(gen.fd, frame, gen.round_packets())
    lost = news() - before - gen.round_passing()
    return 1 - max(lost, 0) / gen.live


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flow-max", type=int, default=262144)
    ap.add_argument("--warm", type=int, default=4)
    args = ap.parse_args()
    C.require_root()
    from scapy.all import IP, UDP, raw

    frame = raw(C.eth() / IP(src="10.0.0.1", dst="192.0.2.1") / UDP(sport=40000, dport=443))
    rows = []
    with C.Lab("xcap") as lab:
        dev = lab.spare_veth("C")
        flt = C.load_xdpgate(layout.Sizes(flow_max=args.flow_max))
        pol = C.Policy(flt)
        pol.apply("default: allow")
        pol.config(sample_pkts=0)
        ev = flt.maps["events"]
        try:
            for share, trans, cycle in MIXES:
                live = int(share * args.flow_max) // (cycle - trans) * (cycle - trans)
                row = {"share": share, "passing": trans / (cycle - trans)}
                gen = C.ChurnGen(live, trans, cycle, flt.prog_fd)
                try:
                    C.attach_fd(lab.ns_a, dev, gen.fd)
                    flt.maps.flowtable.clear()
                    row["xdpgate"] = kept_share(
                        gen, frame, lambda: ev.counters()[Event.FLOW_NEW][0], args.warm)
                    for table in ("lru", "setassoc"):
                        fl = C.floor_prog(args.flow_max, table)
                        try:
                            gen.target(fl.fd)
                            row[table] = kept_share(gen, frame, fl.news, args.warm)
                        finally:
                            fl.close()
                    gen.target(flt.prog_fd)
                finally:
                    gen.close()
                rows.append(row)
                C.log(f"live {share:.2f} of the table, {row['passing']:.2f} passing flows per "
                      f"live packet: kept xdpgate {row['xdpgate']:.2%}, kernel LRU "
                      f"{row['lru']:.2%}, one 8-way set {row['setassoc']:.2%}")
        finally:
            flt.close()
    out = {}
    for r in rows:
        tag = f"live{int(r['share'] * 100)}_pass{r['passing']:.2f}".replace(".", "")
        out[f"{tag}_kept"] = r["xdpgate"]
        out[f"{tag}_lru_kept"] = r["lru"]
        out[f"{tag}_oneset_kept"] = r["setassoc"]
        if r["setassoc"] < 1:  # live flows lost, against the one-set table's losses
            out[f"{tag}_lost_over_oneset"] = (1 - r["xdpgate"]) / (1 - r["setassoc"])
    out["flow_max"] = args.flow_max
    print(C.kv_line(out))


if __name__ == "__main__":
    main()
