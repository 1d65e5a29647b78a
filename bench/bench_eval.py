"""What a rule evaluation costs, next to a cached verdict, through BPF_PROG_TEST_RUN.

Setup (all in this run): xdpgate loaded with the default sizes, bench_droprate's 16-rule policy
(15 rules on `tcp dport 1000+i` from a /24 each, then `udp dport 9 -> drop`) with
`stateless_drops: true`, sampling off; a bare XDP_DROP; both attached to idle veths in a
namespace of our own. Frames, each run with repeat (medians over --rounds):
  - cached drop: a `udp dport 9` frame whose flow has an entry (made before the policy turns
    stateless), so each run finds the flow and reads its cached verdict;
  - rules drop:  the same with another source port and no entry: a drop no label could
    change leaves no entry, so every run evaluates the rules (what a spoofed flood costs,
    less its cache misses);
  - passing:     an established TCP flow the default lets through (cached verdict);
  - and, with --wide, the rules drop under the same policy with one more rule, last (so the
    drop still leaves no entry), that names the fields the evaluation skips when no rule
    names them (category, call, tunnel, source port): the difference is what skipping them
    saves.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_eval   [--rounds N --repeat N --wide]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from bench.bench_droprate import policy  # noqa: E402
from xdpgate.control import layout  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=300_000)
    ap.add_argument("--wide", action="store_true", help="also a policy naming every field")
    args = ap.parse_args()
    C.require_root()
    from scapy.layers.inet import IP, TCP, UDP

    def udp9(sport: int) -> bytes:
        return bytes(C.eth() / IP(src="10.98.0.1", dst="10.99.0.2") / UDP(sport=sport, dport=9)
                     / (b"\0" * 18))

    frames = {"cached_drop": udp9(10000), "rules_drop": udp9(10001),
              "passing": bytes(C.eth() / IP(src="10.98.0.1", dst="10.99.0.2")
                               / TCP(sport=40000, dport=443, flags="A"))}
    narrow = policy(16)
    wide = policy(16)
    wide["rules"].append({"name": "class", "match": {"category": "p2p", "call": "app",
                                                        "tunnel": "vxlan", "src_port": 1},
                             "action": "drop"})
    with C.Lab("ev", two_ns=False) as lab:
        bare = C.BareProg()
        flt = C.load_xdpgate(layout.Sizes())
        try:
            C.attach_fd(lab.ns_a, lab.a, flt.prog_fd)
            C.attach_fd(lab.ns_a, lab.b, bare.fd)
            pol = C.Policy(flt)
            pol.config(sample_pkts=0, fail_closed=0)
            pol.apply({**narrow, "flow_verdicts": "rules"})
            for name in ("cached_drop", "passing"):  # their entries, made while tracked
                C.test_run_ns(flt.prog_fd, frames[name], 1)
            policies = {"": {**narrow, "flow_verdicts": "rules", "stateless_drops": True}}
            if args.wide:
                policies["wide_"] = {**wide, "flow_verdicts": "rules", "stateless_drops": True}
            res: dict[str, list[int]] = {"bare": []}
            applied = None
            for _ in range(args.rounds):
                res["bare"].append(C.test_run_ns(bare.fd, frames["passing"], args.repeat)[1])
                for tag, p in policies.items():
                    if p is not applied:  # alternating with --wide, else once
                        pol.apply(p)
                        applied = p
                    for name, fr in frames.items():
                        if tag and name != "rules_drop":
                            continue
                        rv, ns = C.test_run_ns(flt.prog_fd, fr, args.repeat)
                        want = C.XDP_PASS if name == "passing" else C.XDP_DROP
                        assert rv == want, f"{tag}{name}: XDP action {rv}, not {want}"
                        res.setdefault(tag + name, []).append(ns)
        finally:
            flt.close()
            bare.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    for k, v in med.items():
        C.log(f"{k:<16} {v:7.1f} ns a packet  ({v / med['bare']:.2f}x bare)")
    out = {f"{k}_ns": v for k, v in med.items()}
    out["rules_over_cached"] = med["rules_drop"] / med["cached_drop"]
    out["cached_over_bare"] = med["cached_drop"] / med["bare"]
    if args.wide:
        out["wide_over_narrow"] = med["wide_rules_drop"] / med["rules_drop"]
    C.log(" ".join(f"{k}={v:.4g}" for k, v in out.items()))


if __name__ == "__main__":
    main()
