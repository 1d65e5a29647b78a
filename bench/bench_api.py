"""The control service under measurement (issue 5): rule change latency through REST, a
1,000,000-entry set upload next to `ipset restore` and an nftables interval set, and API read
throughput with the data path idle vs under load. All in one run, on a namespace lab.

Setup: control/lab.Lab (client ns -> gateway ns with xdpgate on both veths -> server ns, unique
prefix `xb<hex>`, destroyed in finally), an in-process Controller on the gateway (default
RunConfig: classify on, native mode; `default: allow` policy; state dir in a temp dir) and the
API served by api/server.serve on 127.0.0.1:0 with the admin token. The REST client is
control/client.Client (httpx) in this process for (a) and (b); the read-load clients of (c)
run in a separate process.

(a) Rule change latency. A probe process sends UDP datagrams (sequence number + send time,
    CLOCK_MONOTONIC) from the client ns to the server every ~0.1 ms and records which arrive.
    Each iteration: POST /api/v1/rules {udp dst_port P: drop}, wait, DELETE /api/v1/rules/NAME,
    wait. Enforcement time of the add = send time of the first datagram that was dropped; of
    the delete = send time of the first datagram delivered again. Reported: from the REST call
    returning (clipped at 0: enforcement before the return is 0) and from the call's start,
    p50/p99 over the iterations; `leaks` = datagrams delivered that were sent more than 1 ms
    after an add returned. Baseline (same run, same probe): the same rule added/removed by
    calling the controller directly (Controller.edit_policy, no HTTP).
(b) Set upload: 1,000,000 random prefixes (bench/common.random_prefixes: 900k IPv4 /24-/32,
    100k IPv6) as text/plain, one CIDR a line, PUT /api/v1/sets/big while a rule uses the set
    (so the data path's LPM maps are loaded before the call returns); then `ipset restore`
    (hash:net inet + inet6) and `nft -f` (two `flags interval; auto-merge` sets) of the same
    entries in the gateway ns. The set and its rule are removed before (c).
(c) API read throughput: N client threads (separate process, keep-alive httpx clients) call
    GET /api/v1/stats, then GET /api/v1/flows?limit=100, for a few seconds each; idle, then
    while a sender process in the client ns blasts UDP through the gateway over 1024 flows
    (the flow table holds the same flows in both cases: a warm-up blast runs first), then idle
    again (idle = mean of both).

    /opt/xdpgate/venv/bin/python -m bench.bench_api [--iters 60] [--set-size 1000000]
        [--read-s 4] [--threads 4] [--no-nft]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import secrets
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.api.app import create_app  # noqa: E402
from xdpgate.api.auth import ensure_tokens  # noqa: E402
from xdpgate.api.server import serve  # noqa: E402
from xdpgate.control import policy as pol  # noqa: E402
from xdpgate.control.client import Client  # noqa: E402
from xdpgate.control.controller import Controller, RunConfig  # noqa: E402
from xdpgate.control.lab import Lab, netns_socket  # noqa: E402

PROBE_PORT = 5099
mono = time.monotonic_ns


def pct(vals: list[float], q: float) -> float:
    if not vals:
        return float("nan")
    v = sorted(vals)
    return v[min(len(v) - 1, int(q * len(v)))]


# ---- (a) probe process -------------------------------------------------------------------

def probe_main(conn, lab: Lab, port: int, gap_s: float) -> None:
    with netns_socket(lab.server_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind((lab.server_ip4, port))
    rx.settimeout(0.2)
    with netns_socket(lab.client_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: list[int] = []
    stop = threading.Event()

    def recv() -> None:
        while not stop.is_set():
            try:
                got.append(struct.unpack_from("!Q", rx.recv(64))[0])
            except TimeoutError:
                pass

    t = threading.Thread(target=recv, daemon=True)
    t.start()
    sent: list[int] = []  # send time (ns) by sequence number
    conn.send("ready")
    seq = 0
    while not conn.poll():
        ts = mono()
        tx.sendto(struct.pack("!Qq", seq, ts), (lab.server_ip4, port))
        sent.append(ts)
        seq += 1
        time.sleep(gap_s)
    conn.recv()
    time.sleep(0.3)
    stop.set()
    t.join(2)
    conn.send((sent, got))


def rule_latency(lab: Lab, ctl: Controller, cli: Client, iters: int, hold_s: float) -> dict:
    """Returns per mode (rest, direct) lists of (t_start, t_return) for adds and deletes, and
    the probe's log."""
    ctx = mp.get_context("fork")
    conn, child = ctx.Pipe()
    p = ctx.Process(target=probe_main, args=(child, lab, PROBE_PORT, 0.0001), daemon=True)
    p.start()
    assert conn.recv() == "ready"
    rule = {"name": "lat", "match": {"proto": "udp", "dst_port": PROBE_PORT}, "action": "drop"}
    calls: dict[str, list[tuple[int, int, int, int]]] = {"rest": [], "direct": []}

    def direct_add(p: pol.Policy) -> pol.Policy:
        p.rules.append(pol.Rule.model_validate(rule))
        return p

    def direct_del(p: pol.Policy) -> pol.Policy:
        p.rules = [r for r in p.rules if r.name != "lat"]
        return p

    try:
        time.sleep(0.2)
        for i in range(iters):
            for mode in ("rest", "direct"):  # interleaved: same conditions for both
                t0 = mono()
                if mode == "rest":
                    cli.add_rule(rule)
                else:
                    ctl.edit_policy(direct_add, actor="bench", what="rule.add lat")
                t1 = mono()
                time.sleep(hold_s)
                t2 = mono()
                if mode == "rest":
                    cli.delete_rule("lat")
                else:
                    ctl.edit_policy(direct_del, actor="bench", what="rule.delete lat")
                t3 = mono()
                time.sleep(hold_s)
                calls[mode].append((t0, t1, t2, t3))
    finally:
        conn.send("stop")
        sent, got = conn.recv()
        p.join(3)
    return {"calls": calls, "sent": sent, "got": set(got)}


def analyse_latency(calls: list[tuple[int, int, int, int]], sent: list[int], got: set[int]) -> dict:
    import bisect

    add_ret, add_start, del_ret, del_start, leaks, unresolved = [], [], [], [], 0, 0
    for t0, t1, t2, t3 in calls:
        lo = bisect.bisect_left(sent, t0)
        mid = bisect.bisect_left(sent, t2)
        hi = bisect.bisect_left(sent, t3 + (t2 - t1))  # up to the next call
        first_drop = next((s for s in range(lo, mid) if s not in got), None)
        if first_drop is None:
            unresolved += 1
        else:
            te = sent[first_drop]
            add_start.append((te - t0) / 1e6)
            add_ret.append(max(0, te - t1) / 1e6)
            leaks += sum(1 for s in range(first_drop, mid) if s in got and sent[s] > t1 + 1_000_000)
        first_back = next((s for s in range(mid, hi) if s in got), None)
        if first_back is None:
            unresolved += 1
        else:
            te = sent[first_back]
            del_start.append((te - t2) / 1e6)
            del_ret.append(max(0, te - t3) / 1e6)
    call_ms = [(t1 - t0) / 1e6 for t0, t1, _, _ in calls] + [(t3 - t2) / 1e6 for _, _, t2, t3 in calls]
    return {"add_ret": add_ret, "add_start": add_start, "del_ret": del_ret,
            "del_start": del_start, "leaks": leaks, "unresolved": unresolved, "call_ms": call_ms}


# ---- (b) set upload ----------------------------------------------------------------------

# ---- (c) read load -----------------------------------------------------------------------

def readers_main(conn, url: str, token: str, path: str, threads: int, secs: float) -> None:
    import httpx

    counts = [0] * threads
    errors = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as c:
            c.get(path)
            start.wait()
            end = time.monotonic() + secs
            while (t := time.monotonic()) < end:
                r = c.get(path)
                lat[i].append(time.monotonic() - t)
                if r.status_code == 200:
                    counts[i] += 1
                else:
                    errors[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    all_lat = sorted(x for lst in lat for x in lst)
    conn.send((sum(counts) / dt, sum(errors), pct(all_lat, 0.5) * 1e3, pct(all_lat, 0.99) * 1e3))


def read_rate(url: str, token: str, path: str, threads: int, secs: float) -> tuple:
    ctx = mp.get_context("fork")
    conn, child = ctx.Pipe()
    p = ctx.Process(target=readers_main, args=(child, url, token, path, threads, secs))
    p.start()
    r = conn.recv()
    p.join(5)
    return r


def blaster_main(lab: Lab, flows: int, secs: float) -> None:
    with netns_socket(lab.client_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 64
    dst = lab.server_ip4
    end = time.monotonic() + secs
    n = 0
    while True:
        for port in range(20000, 20000 + flows):
            s.sendto(payload, (dst, port))
        n += flows
        if time.monotonic() > end:
            break


class Blaster:
    def __init__(self, lab: Lab, flows: int, secs: float) -> None:
        self.p = mp.get_context("fork").Process(target=blaster_main, args=(lab, flows, secs),
                                                daemon=True)
        self.p.start()

    def stop(self) -> None:
        if self.p.is_alive():
            self.p.kill()
        self.p.join(3)


def passed_pkts(ctl: Controller) -> int:
    st = ctl.stats()
    return sum(v.get("packets", 0) for v in st.get("by_verdict", {}).values()) \
        if isinstance(st.get("by_verdict"), dict) else 0


# ---- main --------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=60, help="rule add+delete iterations per mode")
    ap.add_argument("--hold-s", type=float, default=0.04, help="wait after each change")
    ap.add_argument("--set-size", type=int, default=1_000_000)
    ap.add_argument("--no-nft", action="store_true")
    ap.add_argument("--nft-timeout", type=float, default=90)
    ap.add_argument("--read-s", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--load-flows", type=int, default=1024)
    args = ap.parse_args()
    C.require_root()
    C.log(f"load average before: {open('/proc/loadavg').read().strip()}")
    kv: dict = {}
    lab = ctl = srv = None
    tmp = tempfile.TemporaryDirectory(prefix="xgbench-api-")
    try:
        lab = Lab.create("xb" + secrets.token_hex(3))
        pfile = Path(tmp.name) / "policy.yaml"
        pfile.write_text("default: allow\n")
        t = time.perf_counter()
        ctl = Controller(RunConfig(ifaces=lab.gw_ifaces, policy_file=pfile,
                                   state_dir=Path(tmp.name) / "state", netns=lab.gw_ns,
                                   instance=lab.prefix))
        ctl.start()
        tokens = ensure_tokens(ctl.state_dir)
        srv = serve(create_app(ctl, tokens), "127.0.0.1:0")
        C.log(f"lab {lab.prefix}, controller started in {time.perf_counter() - t:.1f} s, "
              f"API at {srv.url}; attached: {[a['name'] + '/' + a['mode'] for a in ctl.interfaces()]}")
        with Client(srv.url, tokens.admin, timeout=600) as cli:
            # ---- (a)
            C.log(f"-- (a) rule change latency: {args.iters} x (add + delete) per mode, "
                  f"probe every ~0.1 ms")
            r = rule_latency(lab, ctl, cli, args.iters, args.hold_s)
            gaps = [b - a for a, b in zip(r["sent"], r["sent"][1:])]
            C.log(f"  probe: {len(r['sent'])} sent, {len(r['got'])} delivered, "
                  f"median gap {statistics.median(gaps) / 1e3:.0f} us (the resolution)")
            res = {m: analyse_latency(r["calls"][m], r["sent"], r["got"]) for m in ("rest", "direct")}
            for m, a in res.items():
                C.log(f"  {m:6s} call p50 {pct(a['call_ms'], .5):6.2f} ms p99 {pct(a['call_ms'], .99):6.2f}"
                      f" | add enforced after return p50 {pct(a['add_ret'], .5):5.2f} p99 "
                      f"{pct(a['add_ret'], .99):5.2f} ms, from call start p50 "
                      f"{pct(a['add_start'], .5):6.2f} p99 {pct(a['add_start'], .99):6.2f} ms"
                      f" | delete after return p50 {pct(a['del_ret'], .5):5.2f} p99 "
                      f"{pct(a['del_ret'], .99):5.2f}, from start p50 {pct(a['del_start'], .5):6.2f}"
                      f" p99 {pct(a['del_start'], .99):6.2f} ms | leaks {a['leaks']} "
                      f"unresolved {a['unresolved']}")
            a, d = res["rest"], res["direct"]
            ret_all = a["add_ret"] + a["del_ret"]
            start_all = a["add_start"] + a["del_start"]
            dstart_all = d["add_start"] + d["del_start"]
            kv.update({"rule_p50_ms": pct(ret_all, .5), "rule_p99_ms": pct(ret_all, .99),
                       "rule_from_call_p50_ms": pct(start_all, .5),
                       "rule_from_call_p99_ms": pct(start_all, .99),
                       "rule_direct_from_call_p50_ms": pct(dstart_all, .5),
                       "rule_rest_over_direct_p50": pct(start_all, .5) / pct(dstart_all, .5),
                       "rule_leaks": a["leaks"] + d["leaks"],
                       "rule_unresolved": a["unresolved"] + d["unresolved"]})

            # ---- (b)
            n = args.set_size
            C.log(f"-- (b) {n}-entry set upload")
            t = time.perf_counter()
            lines, n4, n6 = C.random_prefixes(n, v6_share=0.1, seed=11)
            text = "".join(s + "\n" for s in lines)
            C.log(f"  generated {n4} IPv4 + {n6} IPv6 prefixes ({len(text) / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - t:.1f} s")
            cli.put_set("big", "192.0.2.0/24\n")
            cli.add_rule({"name": "big", "match": {"src_set": "big"}, "action": "drop"},
                         position=0)
            t = time.perf_counter()
            cnt = cli.put_set("big", text)
            up_s = time.perf_counter() - t
            C.log(f"  PUT /api/v1/sets/big (text/plain, rule uses it): {up_s:.2f} s, count {cnt}")
            ipset_s = C.time_ipset(lab.gw_ns, lines, "a")
            C.log(f"  ipset restore (hash:net inet+inet6): {ipset_s:.2f} s")
            nft_s = None if args.no_nft else C.time_nft(lab.gw_ns, lines, "an", args.nft_timeout)
            if nft_s is not None:
                C.log(f"  nft -f (interval sets, auto-merge): {nft_s:.2f} s")
            t = time.perf_counter()
            cli.delete_rule("big")
            cli.delete_set("big")
            C.log(f"  (rule + set removed in {time.perf_counter() - t:.2f} s)")
            kv.update({"set_entries": cnt, "set_upload_s": up_s, "ipset_s": ipset_s,
                       "upload_over_ipset": up_s / ipset_s})
            if nft_s is not None:
                kv.update({"nft_s": nft_s, "upload_over_nft": up_s / nft_s})
            del text, lines

            # ---- (c)
            C.log(f"-- (c) API reads, {args.threads} client threads (separate process), "
                  f"{args.read_s:.0f} s per case; load = UDP over {args.load_flows} flows")
            b = Blaster(lab, args.load_flows, 2.0)  # warm-up: the flow table gets its flows
            b.p.join(5)
            b.stop()
            time.sleep(0.5)
            C.log(f"  flow table: {len(ctl.flows(limit=10**9))} flows")
            rates: dict[str, list] = {}
            for phase in ("idle", "load", "idle"):
                for path in ("/api/v1/stats", "/api/v1/flows?limit=100"):
                    bl = None
                    c0 = C.counters(ctl.filter)
                    t0 = time.perf_counter()
                    if phase == "load":
                        bl = Blaster(lab, args.load_flows, args.read_s + 30)
                        time.sleep(0.3)
                        c0, t0 = C.counters(ctl.filter), time.perf_counter()
                    try:
                        rps, errs, p50, p99 = read_rate(srv.url, tokens.readonly, path,
                                                        args.threads, args.read_s)
                    finally:
                        if bl is not None:
                            c1, t1 = C.counters(ctl.filter), time.perf_counter()
                            bl.stop()
                    pps = (sum(p for p, _ in c1.values()) - sum(p for p, _ in c0.values())) / (t1 - t0) \
                        if bl is not None else 0.0
                    rates.setdefault(f"{phase}:{path}", []).append(rps)
                    C.log(f"  {phase:4s} {path:26s} {rps:7.1f} req/s  p50 {p50:7.1f} ms  p99 "
                          f"{p99:7.1f} ms  errors {errs}"
                          + (f"  (data path {pps / 1e3:.0f} kpps during it)" if bl else ""))
                    if bl is not None:
                        kv.setdefault("load_kpps", pps / 1e3)
            for path, tag in (("/api/v1/stats", "stats"), ("/api/v1/flows?limit=100", "flows")):
                idle = statistics.mean(rates[f"idle:{path}"])
                load = rates[f"load:{path}"][0]
                kv.update({f"{tag}_idle_rps": idle, f"{tag}_load_rps": load,
                           f"{tag}_load_over_idle": load / idle if idle else float("nan")})
    finally:
        if srv is not None:
            srv.stop()
        if ctl is not None:
            ctl.stop(keep=False)
        if lab is not None:
            lab.destroy()
        tmp.cleanup()
    C.log(C.kv_line(kv))


if __name__ == "__main__":
    main()
