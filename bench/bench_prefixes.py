"""Time to load 1,000,000 prefixes through xdpgate's real path, next to `ipset restore`
(hash:net) and an nftables interval set of the same prefixes, in the same run.

xdpgate (one timing per phase, all on the same text):
  parse    sets.parse_lines of the text (one CIDR a line)
  compile  compile_policy of a policy whose rule references the set (memberships, classes)
  apply    Applier.apply: batch writes into the LPM tries, then the bank flip
  total    parse + compile + apply  (the bcc compile/load of the program is not included)
ipset: `ipset restore` of a script creating two hash:net sets (inet and inet6: one ipset set
holds one family) with maxelem big enough, and adding every prefix; run inside a network
namespace of our own with uniquely named sets, which are destroyed afterwards.
nftables (unless --no-nft): `nft -f` of a table with two `flags interval` sets (ipv4_addr,
ipv6_addr; auto-merge, since random prefixes can overlap) holding the same prefixes, in
the same namespace; skipped with a note if it takes longer than --nft-timeout seconds.

Prefixes: --prefixes distinct random prefixes, IPv4 /24-/32 and --v6-share of them IPv6.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_prefixes   [--prefixes N] [--no-nft]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.control import compile as comp  # noqa: E402
from xdpgate.control import layout  # noqa: E402
from xdpgate.control import policy as pol  # noqa: E402
from xdpgate.control import sets as xsets  # noqa: E402


def time_xdpgate(p: C.Policy, policy: pol.Policy, text: str) -> dict[str, float]:
    flt = p.f
    t0 = time.perf_counter()
    prefixes = xsets.parse_lines(text.splitlines(), "sets.big")
    t1 = time.perf_counter()
    wanted = comp.compile_policy(policy, {"big": prefixes}, flt.sizes, p.ap.classes)
    t2 = time.perf_counter()
    p.ap.apply(wanted)
    t3 = time.perf_counter()
    return {"parse": t1 - t0, "compile": t2 - t1, "apply": t3 - t2, "total": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--v6-share", type=float, default=0.1)
    ap.add_argument("--no-nft", action="store_true")
    ap.add_argument("--adopt", action="store_true",
                    help="also time an apply by a fresh Applier (reads the bank back, ~35 s at 1M)")
    ap.add_argument("--nft-timeout", type=float, default=90)
    args = ap.parse_args()
    C.require_root()
    t_start = time.perf_counter()
    lines, n4, n6 = C.random_prefixes(args.prefixes, args.v6_share, seed=2)
    text = "\n".join(lines) + "\n"
    C.log(f"# bench_prefixes: {len(lines)} prefixes ({n4} IPv4 /24-/32, {n6} IPv6), "
          f"{len(text) / 1e6:.1f} MB of text, kernel {os.uname().release}")
    policy = pol.from_dict({"default": "allow", "sets": {"big": {"file": "/dev/null"}},
                            "rules": [{"name": "block-big", "match": {"src_set": "big"},
                                       "action": "drop"}]})
    need4 = max(2 * n4 + 16, 1024)
    need6 = max(2 * n6 + 16, 1024)
    sizes = layout.Sizes(lpm4_max=max(need4, layout.Sizes().lpm4_max),
                         lpm6_max=max(need6, layout.Sizes().lpm6_max))
    flt = None
    with C.Lab("px", two_ns=False) as lab:
        try:
            flt = C.load_xdpgate(sizes)
            ctl = C.Policy(flt)  # one applier, as in the running controller
            xg = time_xdpgate(ctl, policy, text)
            C.log("xdpgate: " + ", ".join(f"{k} {v:.2f}s" for k, v in xg.items()))
            ips = C.time_ipset(lab.ns_a, lines, "p")
            C.log(f"ipset restore (hash:net): {ips:.2f}s")
            nft = None
            if not args.no_nft:
                nft = C.time_nft(lab.ns_a, lines, "n", args.nft_timeout)
                C.log(f"nft -f (interval sets): {nft:.2f}s" if nft is not None else
                      f"nft -f (interval sets): did not finish in {args.nft_timeout:.0f}s")
            # the second bank: an apply of the same policy diffs against the other bank, which
            # is empty, so this is a second full load (measured to show the spread)
            xg2 = time_xdpgate(ctl, policy, text)
            C.log("xdpgate (other bank): " + ", ".join(f"{k} {v:.2f}s" for k, v in xg2.items()))
            xg3 = time_xdpgate(ctl, policy, text)
            C.log("xdpgate (same content again, diff is empty): "
                  + ", ".join(f"{k} {v:.2f}s" for k, v in xg3.items()))
            if args.adopt:
                # a controller that starts on a running filter has no cached bank state: its
                # first apply reads the target bank back from the maps
                xg4 = time_xdpgate(C.Policy(flt), policy, text)
                C.log("xdpgate (fresh applier, bank read back first, diff empty): "
                      + ", ".join(f"{k} {v:.2f}s" for k, v in xg4.items()))
            total = min(xg["total"], xg2["total"])
            C.log(f"runtime {time.perf_counter() - t_start:.0f}s")
            out = {"prefixes": len(lines), "xdpgate_s": total, "xdpgate_parse_s": xg["parse"],
                   "xdpgate_compile_s": xg["compile"], "xdpgate_apply_s": xg["apply"],
                   "xdpgate_noop_reapply_s": xg3["total"], "ipset_s": ips,
                   "xdpgate_over_ipset": total / ips}
            if args.adopt:
                out["xdpgate_adopt_reapply_s"] = xg4["total"]
            if nft is not None:
                out["nft_s"] = nft
                out["xdpgate_over_nft"] = total / nft
            elif not args.no_nft:
                out["nft_s"] = f">{args.nft_timeout:.0f}"
            C.log(C.kv_line(out))
        finally:
            if flt is not None:
                flt.close()


if __name__ == "__main__":
    main()
