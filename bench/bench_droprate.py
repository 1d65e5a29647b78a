"""Drop rate on a veth rig: (a) a bare XDP_DROP program, (b) xdpgate with a policy dropping
the traffic, (c) an nftables netdev-family ingress-hook drop rule, on the same veth, same run.

Rig: two namespaces of our own joined by a veth pair; the filter is on the receiving end `B`.
Sender: the kernel's own fast path, as xdp-trafficgen does it: BPF_PROG_TEST_RUN in live-frame
mode (BPF_F_TEST_XDP_LIVE_FRAMES) runs a small XDP program inside the sender namespace that
rewrites the UDP source port (rotating over --flows flows) and XDP_REDIRECTs each frame out of
the sending veth `A`. The frames reach B's NAPI as XDP frames: an XDP program on B sees them
without an skb (as with a native NIC driver); with no XDP program (nftables case) veth builds
an skb for each and the ingress hook drops it. GRO is on on B so its NAPI runs in every case.

Counting: drops are read from the programs' own counters (the bare program counts in a per-CPU
array; xdpgate's counters map, verdict DROP; nft's rule counter), never inferred from the
sender. The sender's own count (frames it generated) is printed next to them: with this
machine's CPUs shared by sender and receiver (the veth NAPI runs in softirq on the sending
CPU), the figure is the rate of sender + filter together; when received < sent, the veth ring
overflowed (the receiver was the bottleneck), when they are equal the pair ran in lock-step
and the sender's cost is part of every figure (the ratios then understate differences).

Three more cases put the targets in context: the floor program (common.FLOOR_C: parse + the
same LRU flow table, no policy), the floor with a set-associative table in an array (the
cheapest table bench_flowtable measures), and the floor's parse and key with no flow table
at all (what a path that decides drops before any flow lookup could at best reach).

Each case runs --seconds per round, cases interleaved, --rounds rounds, median reported.
Targets (issue 3): xdpgate >= 0.9x bare and >= 1.15x nftables.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_droprate   [--seconds S --rounds N --flows N]
"""

from __future__ import annotations

import argparse
import ctypes as ct
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.control import layout  # noqa: E402

SENDER_C = """
BPF_PERCPU_ARRAY(sent, u64, 1);
int gen(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + SPORT_OFF + 2 > end)
        return XDP_ABORTED;
    u32 z = 0;
    u64 *c = sent.lookup(&z);
    if (!c)
        return XDP_ABORTED;
    *c += 1;
    *(u16 *)(data + SPORT_OFF) = bpf_htons(BASE_PORT + (u16)(*c % NFLOWS));
    return bpf_redirect(OUT_IFINDEX, 0);
}
"""


class Sender:
    def __init__(self, lab: C.Lab, flows: int, size: int) -> None:
        from scapy.layers.inet import IP, UDP

        self.lab = lab
        self.ifindex = lab.ifindex("a")
        pad = max(0, size - 14 - 20 - 8)
        self.frame = bytes(C.eth(lab.mac_a, lab.mac_b) / IP(src=lab.addr_a, dst=lab.addr_b, ttl=64)
                           / UDP(sport=10000, dport=9, chksum=0) / (b"\0" * pad))
        sport_off = 14 + 20
        self.prog = C.BareProg(text=SENDER_C, fn="gen", cflags=[
            f"-DSPORT_OFF={sport_off}", "-DBASE_PORT=10000", f"-DNFLOWS={flows}",
            f"-DOUT_IFINDEX={self.ifindex}"])

    def sent(self) -> int:
        return sum(self.prog.b[b"sent"][ct.c_int(0)])

    def blast(self, seconds: float, chunk: int) -> float:
        """Send for `seconds`; returns the elapsed time."""
        with C.in_netns(self.lab.ns_a):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                C.live_frames_run(self.prog.fd, self.frame, chunk, self.ifindex)
            return time.perf_counter() - t0

    def close(self) -> None:
        self.prog.close()


def nft(ns: str, *args: str, input: str | None = None) -> str:
    return C.sh("ip", "netns", "exec", ns, "nft", *args, input=input).stdout


class NftDrop:
    def __init__(self, lab: C.Lab) -> None:
        self.ns, self.dev = lab.ns_b, lab.b
        self.table = C.unique("t")
        self.on = False

    def add(self) -> None:
        nft(self.ns, "-f", "-", input=(
            f"table netdev {self.table} {{\n"
            f"  chain ing {{ type filter hook ingress device \"{self.dev}\" priority 0; policy accept;\n"
            f"    udp dport 9 counter drop\n  }}\n}}\n"))
        self.on = True

    def remove(self) -> None:
        if self.on:
            nft(self.ns, "delete", "table", "netdev", self.table)
            self.on = False

    def drops(self) -> int:
        if not self.on:
            return 0
        j = json.loads(nft(self.ns, "-j", "list", "table", "netdev", self.table))
        for item in j.get("nftables", []):
            rule = item.get("rule")
            if rule:
                for e in rule.get("expr", []):
                    if "counter" in e:
                        return int(e["counter"]["packets"])
        return 0


def policy(nrules: int) -> dict:
    rules = [{"name": f"r{i}", "match": {"proto": "tcp", "dst_port": 1000 + i,
                                          "src": f"198.51.{i % 256}.0/24"}, "action": "drop"}
             for i in range(nrules - 1)]
    rules.append({"name": "blast", "match": {"proto": "udp", "dst_port": 9}, "action": "drop"})
    return {"default": "allow", "rules": rules}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="per case per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flows", type=int, default=1024, help="UDP flows the sender rotates over")
    ap.add_argument("--size", type=int, default=64, help="frame size (bytes, without FCS)")
    ap.add_argument("--rules", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=200_000, help="frames per live test-run call")
    args = ap.parse_args()
    C.require_root()
    t_start = time.perf_counter()
    C.log(f"# bench_droprate: {args.flows} flows, {args.size}-byte frames, {args.seconds}s x "
          f"{args.rounds} rounds per case, kernel {os.uname().release}, {os.cpu_count()} cpus")
    bare = flt = snd = floor = floor_sa = parse = None
    with C.Lab("dr") as lab:
        nftd = NftDrop(lab)
        try:
            C.sh("ip", "netns", "exec", lab.ns_b, "ethtool", "-K", lab.b, "gro", "on")
            bare = C.BareProg(counting=True)
            flt = C.load_xdpgate(layout.Sizes())
            pol = C.Policy(flt)
            pol.config(sample_pkts=0, fail_closed=0)
            pol.apply(policy(args.rules))
            snd = Sender(lab, args.flows, args.size)
            floor = C.floor_prog(layout.Sizes().flow_max)
            floor_sa = C.floor_prog(layout.Sizes().flow_max, "setassoc")
            parse = C.floor_prog(layout.Sizes().flow_max, "none")

            def xdp_case(fd: int, drops: Callable[[], int]) -> Callable[[], tuple]:
                """A case that attaches program `fd` on B and reads its drops with `drops`."""
                def case() -> tuple:
                    C.attach_fd(lab.ns_b, lab.b, fd)
                    return (drops, lambda: C.attach_fd(lab.ns_b, lab.b, -1))
                return case

            def case_nft() -> tuple:
                nftd.add()
                return (nftd.drops, nftd.remove)

            cases = {"bare": xdp_case(bare.fd, bare.drops),
                     "floor": xdp_case(floor.fd, floor.drops),
                     "floor_sa": xdp_case(floor_sa.fd, floor_sa.drops),
                     "parse": xdp_case(parse.fd, parse.drops),
                     "xdpgate": xdp_case(flt.prog_fd, lambda: C.drops_of(flt)),
                     "nft": case_nft}
            res: dict[str, list] = {k: [] for k in cases}
            sent: dict[str, list] = {k: [] for k in cases}
            for r in range(args.rounds):
                order = list(cases) if r % 2 == 0 else list(reversed(cases))
                for name in order:
                    count, undo = cases[name]()
                    try:
                        snd.blast(0.3, args.chunk // 4)  # warm up (xdpgate: creates the flows)
                        d0, s0 = count(), snd.sent()
                        el = snd.blast(args.seconds, args.chunk)
                        time.sleep(0.05)
                        d1, s1 = count(), snd.sent()
                    finally:
                        undo()
                    res[name].append((d1 - d0) / el)
                    sent[name].append((s1 - s0) / el)
                    C.log(f"round {r} {name:<8} dropped {(d1 - d0) / el / 1e6:7.3f} Mpps   "
                          f"sender {(s1 - s0) / el / 1e6:7.3f} Mpps")
            med = {k: statistics.median(v) for k, v in res.items()}
            smed = {k: statistics.median(v) for k, v in sent.items()}
            c = C.counters(flt)
            C.log("\nxdpgate counters (reason, verdict): pkts  " +
                  ", ".join(f"{layout.Reason(rr).name}/{layout.Verdict(v).name}: {p}"
                            for (rr, v), (p, _) in c.items() if p and rr < layout.R_MAX))
            C.log(f"{'case':<9}{'dropped Mpps':>14}{'sender Mpps':>13}{'reached filter':>16}")
            for k in cases:
                C.log(f"{k:<9}{med[k] / 1e6:>14.3f}{smed[k] / 1e6:>13.3f}"
                      f"{med[k] / smed[k]:>15.1%}")
            bottleneck = "receiver (ring overflow: sent > dropped)" if any(
                med[k] < 0.97 * smed[k] for k in cases) else \
                "sender and receiver share one CPU in lock-step (sent == dropped); " \
                "the sender's cost is in every figure"
            C.log(f"bottleneck: {bottleneck}")
            x_b, x_n = med["xdpgate"] / med["bare"], med["xdpgate"] / med["nft"]
            C.log(f"floor (parse + a flow table, no policy): {med['floor'] / med['bare']:.2f}x "
                  f"bare; xdpgate {med['xdpgate'] / med['floor']:.2f}x the floor; the floor with a "
                  f"set-associative table (bench_flowtable) {med['floor_sa'] / med['bare']:.2f}x bare; "
                  f"its parse and key with no flow table {med['parse'] / med['bare']:.2f}x bare")
            C.log(f"targets: xdpgate >= 0.9x bare: {'met' if x_b >= 0.9 else 'NOT met'}; "
                  f">= 1.15x nft: {'met' if x_n >= 1.15 else 'NOT met'}")
            C.log(f"runtime {time.perf_counter() - t_start:.0f}s")
            C.log(C.kv_line({
                "bare_mpps": med["bare"] / 1e6, "xdpgate_mpps": med["xdpgate"] / 1e6,
                "nft_mpps": med["nft"] / 1e6, "xdpgate_over_bare": x_b, "xdpgate_over_nft": x_n,
                "floor_mpps": med["floor"] / 1e6, "floor_over_bare": med["floor"] / med["bare"],
                "xdpgate_over_floor": med["xdpgate"] / med["floor"],
                "floor_setassoc_over_bare": med["floor_sa"] / med["bare"],
                "parse_only_over_bare": med["parse"] / med["bare"],
                "sender_mpps_bare": smed["bare"] / 1e6, "sender_mpps_xdpgate": smed["xdpgate"] / 1e6,
                "sender_mpps_nft": smed["nft"] / 1e6, "flows": args.flows, "frame_bytes": args.size,
            }))
        finally:
            try:
                nftd.remove()
            except Exception:
                pass
            for o in (snd, flt, bare, floor, floor_sa, parse):
                if o is not None:
                    o.close()


if __name__ == "__main__":
    main()
