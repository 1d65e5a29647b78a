"""Per-packet cost of tunnelled flows (GTP-U, VXLAN; GRE and IP-in-IP as extras) through
BPF_PROG_TEST_RUN, as ratios to the same inner flow without a tunnel and to a bare XDP_DROP.

Same run, same loaded filter and policy for every frame. Both programs are attached to an
idle veth in a namespace of our own (so test runs do not swap the XDP dispatcher).

  - established: one frame per encapsulation, the same inner 5-tuple (UDP 10.1.0.1:40000 ->
    10.2.0.1:5000 and an IPv6 variant), run with repeat=--repeat: after the first run this is
    the flow's cached-verdict path, so the difference is the cost of parsing the tunnel and
    the inner packet (in the entry stage, for these common inner shapes) plus keying the flow
    by tunnel type and id and checking its outer endpoints.
  - new: --new-frames distinct inner flows per encapsulation, each run once (repeat=1), so the
    rules are evaluated every time (tunnelled flows also look up the outer addresses for
    outer_src/outer_dst). The fixed cost of a repeat=1 test run, measured on the bare program,
    is subtracted.
Policy: --rules rules (some matching on tunnel, tunnel_id, outer_src), --prefixes prefixes
in two sets; the benchmark traffic is allowed by default.

Target (issue 6): a tunnel adds at most 25% to the plain flow's cost (ratio <= 1.25).

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_tunnels   [--repeat N --rounds N]
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
from xdpgate.control import layout  # noqa: E402


def frames(sport: int, v6_inner: bool = False) -> dict[str, bytes]:
    from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
    from scapy.layers.inet import GRE, IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    inner_l3 = (IPv6(src="fd00:1::1", dst="fd00:2::1") if v6_inner
                else IP(src="10.1.0.1", dst="10.2.0.1"))
    inner = inner_l3 / UDP(sport=sport, dport=5000) / (b"m" * 32)
    outer = IP(src="192.0.2.1", dst="192.0.2.2")
    e = C.eth()
    out = {
        "plain": e / inner,
        "gtpu": e / outer / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=0x1234, gtp_type=255)
        / inner,
        "gtpu_ext": e / outer / UDP(sport=2152, dport=2152)
        / GTP_U_Header(teid=0x1234, gtp_type=255, E=1, next_ex=0x85)
        / GTPPDUSessionContainer(type=1, QFI=9, NextExtHdr=0) / inner,
        "vxlan": e / outer / UDP(sport=49152, dport=4789) / VXLAN(flags=0x08, vni=42)
        / Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / inner,
        "gre": e / outer / GRE(key_present=1, key=77, proto=0x86DD if v6_inner else 0x0800) / inner,
        "ipip": e / IP(src="192.0.2.1", dst="192.0.2.2", proto=41 if v6_inner else 4) / inner,
    }
    return {k: bytes(v) for k, v in out.items()}


PROBE_PORT = 0xBEEF


def patch_sport(frame: bytes, sport: int) -> bytes:
    """A copy of a frame built with inner sport PROBE_PORT, with another inner sport (the
    inner UDP checksum is left stale: the data path does not verify checksums)."""
    probe = PROBE_PORT.to_bytes(2, "big") + (5000).to_bytes(2, "big")
    i = frame.rindex(probe)
    return frame[:i] + sport.to_bytes(2, "big") + frame[i + 2:]


def make_policy(nrules: int, files: dict[str, str]) -> dict:
    rules = []
    for i in range(nrules - 4):
        k = i % 4
        if k == 0:
            m = {"src_set": ["s0"], "proto": "udp", "dst_port": 6000 + i}
        elif k == 1:
            m = {"tunnel": "gtpu", "tunnel_id": [100000 + i], "proto": "tcp"}
        elif k == 2:
            m = {"outer_src": ["s1"], "proto": "udp", "dst_port": 7000 + i}
        else:
            m = {"dst": f"198.18.{i % 256}.0/24", "proto": "udp"}
        rules.append({"name": f"r{i}", "match": m, "action": "drop"})
    rules += [
        {"name": "no-vxlan-vni-9", "match": {"tunnel": "vxlan", "tunnel_id": 9}, "action": "drop"},
        {"name": "gre-from-s0", "match": {"tunnel": "gre", "outer_src": ["s0"]}, "action": "drop"},
        {"name": "sip", "match": {"proto": "udp", "dst_port": 5060}, "action": "drop"},
        {"name": "s0-any", "match": {"ip_set": ["s0"], "proto": "tcp", "dst_port": 23},
         "action": "drop"},
    ]
    return {"default": "allow", "sets": {n: {"file": f} for n, f in files.items()}, "rules": rules}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--new-frames", type=int, default=1000)
    ap.add_argument("--rules", type=int, default=64)
    ap.add_argument("--prefixes", type=int, default=100_000)
    args = ap.parse_args()
    C.require_root()
    t_start = time.perf_counter()
    C.log(f"# bench_tunnels: repeat {args.repeat}, {args.rounds} rounds, {args.rules} rules, "
          f"{args.prefixes} prefixes, kernel {os.uname().release}")
    lines, _, _ = C.random_prefixes(args.prefixes, seed=5)
    tmp = tempfile.TemporaryDirectory(prefix="xgb-tun-")
    files = {}
    for i, n in enumerate(("s0", "s1")):
        p = Path(tmp.name) / f"{n}.txt"
        extra = ["192.0.2.0/24"] if n == "s1" else []  # the outer source is in s1
        p.write_text("\n".join(lines[i::2] + extra) + "\n")
        files[n] = str(p)

    bare = flt = None
    with C.Lab("tu", two_ns=False) as lab:
        try:
            bare = C.BareProg()
            flt = C.load_xdpgate(layout.Sizes())
            C.attach_fd(lab.ns_a, lab.a, flt.prog_fd)
            C.attach_fd(lab.ns_a, lab.b, bare.fd)
            pol = C.Policy(flt)
            pol.config(sample_pkts=0, fail_closed=0)
            tm = pol.apply(make_policy(args.rules, files))
            C.log("policy: " + ", ".join(f"{k} {v:.1f}s" for k, v in tm.items()))
            t0 = time.perf_counter()
            est = {"v4": frames(40000), "v6": frames(40000, v6_inner=True)}
            kinds = list(est["v4"])
            new = {k: [patch_sport(fr, 20000 + i) for i in range(args.new_frames)]
                   for k, fr in frames(PROBE_PORT).items()}
            C.log(f"frames built in {time.perf_counter() - t0:.1f}s")
            # check every frame passes and is keyed as its tunnel
            for k in kinds:
                rv, _ = C.test_run_ns(flt.prog_fd, est["v4"][k], 1)
                assert rv == C.XDP_PASS, (k, rv)
            tt = sorted({(fk.tun_type, fk.tun_id) for fk, _ in flt.maps.flowtable.items()})
            C.log(f"flow keys (tun_type, tun_id) after one packet each: {tt}")

            res: dict[str, list] = {}
            for r in range(args.rounds):
                res.setdefault("bare", []).append(C.test_run_ns(bare.fd, est["v4"]["plain"],
                                                                args.repeat)[1])
                r1 = [C.test_run_ns(bare.fd, est["v4"]["plain"], 1)[1]
                      for _ in range(args.new_frames)]
                res.setdefault("bare_r1", []).append(statistics.fmean(r1))
                for fam in ("v4", "v6"):
                    for k in kinds:
                        C.test_run_ns(flt.prog_fd, est[fam][k], args.repeat // 10)  # warm up
                        res.setdefault(f"est_{fam}_{k}", []).append(
                            C.test_run_ns(flt.prog_fd, est[fam][k], args.repeat)[1])
                flt.maps.flowtable.delete_many([fk for fk, _ in flt.maps.flowtable.items()])
                for k in kinds:  # (gtpu and gtpu_ext share inner flows and TEID: clear between)
                    res.setdefault(f"new_{k}", []).append(statistics.fmean(
                        C.test_run_ns(flt.prog_fd, fr, 1)[1] for fr in new[k]))
                    flt.maps.flowtable.delete_many([fk for fk, _ in flt.maps.flowtable.items()])
            med = {k: statistics.median(v) for k, v in res.items()}
            bare_ns = med["bare"]
            corr = med["bare_r1"] - bare_ns
            C.log(f"\nbare XDP_DROP {bare_ns:.1f} ns/pkt; repeat=1 fixed cost {corr:.1f} ns "
                  f"(subtracted from new-flow figures)")
            C.log(f"{'encap':<10}{'est v4 ns':>11}{'/plain':>8}{'/bare':>7}{'est v6 ns':>11}"
                  f"{'/plain':>8}{'new ns':>9}{'/plain':>8}")
            out = {"bare_ns": bare_ns}
            for k in kinds:
                e4, e6 = med[f"est_v4_{k}"], med[f"est_v6_{k}"]
                n = med[f"new_{k}"] - corr
                p4, p6, pn = med["est_v4_plain"], med["est_v6_plain"], med["new_plain"] - corr
                C.log(f"{k:<10}{e4:>11.1f}{e4 / p4:>8.3f}{e4 / bare_ns:>7.2f}{e6:>11.1f}"
                      f"{e6 / p6:>8.3f}{n:>9.1f}{n / pn:>8.3f}")
                out[f"{k}_ns"] = e4
            for k in ("gtpu", "vxlan"):
                out[f"{k}_over_plain"] = med[f"est_v4_{k}"] / med["est_v4_plain"]
                out[f"{k}_over_bare"] = med[f"est_v4_{k}"] / bare_ns
                out[f"{k}_v6_over_plain"] = med[f"est_v6_{k}"] / med["est_v6_plain"]
                out[f"{k}_new_over_plain"] = (med[f"new_{k}"] - corr) / (med["new_plain"] - corr)
            out["plain_over_bare"] = med["est_v4_plain"] / bare_ns
            worst = max(out["gtpu_over_plain"], out["vxlan_over_plain"])
            C.log(f"target: tunnel adds <= 25% (established): "
                  f"{'met' if worst <= 1.25 else 'NOT met'} (worst {worst:.3f})")
            C.log(f"runtime {time.perf_counter() - t_start:.0f}s")
            C.log(C.kv_line(out))
        finally:
            if flt is not None:
                flt.close()
            if bare is not None:
                bare.close()
            tmp.cleanup()


if __name__ == "__main__":
    main()
