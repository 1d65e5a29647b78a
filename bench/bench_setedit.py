"""What an operator waits for when editing a policy that holds a big set: adding one entry
to a 1,000,000-entry blocklist, removing one (an IPv4 /32, then an IPv6 /128), and
adding/deleting an unrelated rule, each through the controller
(Controller.add_set_entries / remove_set_entries / edit_policy: compile, apply with the
bank flip, set file, persisted policy). Baselines in the same run: the same edits made from
scratch, as every edit was before the incremental compile (the controller forgets the
policy it applied last, so the compile starts afresh, the applier compares whole tables,
and the standby bank is not caught up), and `ipset add` of one entry into a hash:net
holding the same prefixes. Also the first edit after a load: a load compiled afresh lands
in one bank of the data path, and the controller then brings the other up to it in the
background (Applier.catch_up). Timed: the first edit after a load made with the catch-up
turned off (as before it), then the first edit after a second load (other prefixes,
replacing the first) once the standby bank has caught up.

Setup: control/lab.Lab (client ns -> gateway ns with xdpgate on both veths -> server ns,
unique prefix `xe<hex>`, destroyed in finally), an in-process Controller on the gateway
(classify off, state dir in a temp dir); --prefixes random prefixes (bench/common:
900k IPv4 /24-/32, 100k IPv6) PUT as set `big`, a rule dropping sources in it. Warm-up
edits first (each bank of the data path has then seen the set), then --rounds rounds of
the six edits in each mode, alternating modes; each timed round of a mode follows an
untimed one (an incremental apply after a from-scratch one compares whole tables once);
medians.

Run:  /opt/xdpgate/venv/bin/python -m bench.bench_setedit   [--prefixes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common as C  # noqa: E402
from xdpgate.control import policy as pol  # noqa: E402
from xdpgate.control.controller import Controller, RunConfig  # noqa: E402
from xdpgate.control.lab import Lab  # noqa: E402


def edits(ctl: Controller, i: int, scratch: bool) -> dict[str, float]:
    """The six edits, timed; leaves the policy as it found it. `scratch`: each compiled
    from scratch, as before the incremental compile."""
    out = {}
    entry = f"198.51.{100 + i % 50}.{1 + i // 50 % 250}/32"
    entry6 = f"2001:db8:ffff::{i + 1:x}/128"
    rule = pol.Rule.model_validate({"name": "extra", "match": {"proto": "udp", "dst_port": 9},
                                    "action": "drop"})

    def add_rule(p: pol.Policy) -> pol.Policy:
        p.rules.append(rule)
        return p

    def del_rule(p: pol.Policy) -> pol.Policy:
        p.rules = [r for r in p.rules if r.name != "extra"]
        return p

    ap = ctl.applier
    if scratch:  # nor was the standby bank caught up then
        ap.catch_up = lambda: False
    else:
        ap.__dict__.pop("catch_up", None)
    for name, fn in (("add_entry", lambda: ctl.add_set_entries("big", [entry], actor="bench")),
                     ("remove_entry",
                      lambda: ctl.remove_set_entries("big", [entry], actor="bench")),
                     ("add_entry6", lambda: ctl.add_set_entries("big", [entry6], actor="bench")),
                     ("remove_entry6",
                      lambda: ctl.remove_set_entries("big", [entry6], actor="bench")),
                     ("add_rule", lambda: ctl.edit_policy(add_rule, actor="bench", what="add")),
                     ("delete_rule",
                      lambda: ctl.edit_policy(del_rule, actor="bench", what="delete"))):
        if scratch:
            ap.last = None  # as before: the compile knows nothing of the last one
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    return out


def caught_up_after(ctl: Controller) -> float:
    """Seconds until the standby bank holds the running policy (Applier.catch_up)."""
    ctl._standby_due.set()
    t = time.perf_counter()
    while ctl.applier.needs_catch_up():
        time.sleep(0.01)
    return time.perf_counter() - t


def first_edits(ctl: Controller, n: int) -> dict[str, float]:
    """The first add of one entry after the load (made with the catch-up turned off, as
    before it), then after a second load (other prefixes) with the standby bank caught up."""
    ap = ctl.applier
    t = time.perf_counter()
    ctl.add_set_entries("big", ["198.51.99.1/32"], actor="bench")
    first_off = time.perf_counter() - t
    del ap.catch_up
    caught_up_after(ctl)
    lines, _, _ = C.random_prefixes(n, 0.1, seed=4)
    ctl.put_set("big", "\n".join(lines), actor="bench")
    wait = caught_up_after(ctl)
    t = time.perf_counter()
    ctl.add_set_entries("big", ["198.51.99.2/32"], actor="bench")
    first = time.perf_counter() - t
    C.log(f"first edit after a load: {first_off:.3f} s without the catch-up, {first:.3f} s "
          f"with the standby bank caught up ({wait:.2f} s after the load returned)")
    caught_up_after(ctl)
    return {"first_add_entry_s": round(first, 4), "first_add_entry_nocatchup_s": round(first_off, 4),
            "first_over_nocatchup": round(first / first_off, 4), "catch_up_wait_s": round(wait, 3)}


def rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) // 1024 for ln in f if ln.startswith("VmRSS:"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    C.require_root()
    kv: dict = {}
    lab = ctl = None
    tmp = tempfile.TemporaryDirectory(prefix="xgbench-setedit-")
    try:
        lab = Lab.create("xe" + secrets.token_hex(3))
        pfile = Path(tmp.name) / "policy.yaml"
        pfile.write_text("default: allow\n")
        ctl = Controller(RunConfig(ifaces=lab.gw_ifaces, policy_file=pfile,
                                   state_dir=Path(tmp.name) / "state", netns=lab.gw_ns,
                                   instance=lab.prefix, classify=False))
        ctl.start()
        lines, n4, n6 = C.random_prefixes(args.prefixes, 0.1, seed=3)
        ctl.applier.catch_up = lambda: False  # as before it, for first_edits' reference
        t = time.perf_counter()
        ctl.put_set("big", "\n".join(lines), actor="bench")
        big_rule = pol.Rule.model_validate({"name": "big", "match": {"src_set": "big"},
                                            "action": "drop"})
        ctl.edit_policy(lambda p: (p.rules.append(big_rule), p)[1], actor="bench", what="rule")
        C.log(f"lab {lab.prefix}: {n4} IPv4 + {n6} IPv6 prefixes loaded and in use in "
              f"{time.perf_counter() - t:.1f} s; controller RSS {rss_mb()} MB")
        first = first_edits(ctl, args.prefixes)
        kv.update(first)
        for scratch in (True, False):  # warm-up: both banks hold the set
            edits(ctl, 0, scratch)
        times: dict[str, dict[str, list[float]]] = {"scratch": {}, "incremental": {}}
        for r in range(args.rounds):
            for mode in ("incremental", "scratch") if r % 2 else ("scratch", "incremental"):
                edits(ctl, 100 + r, mode == "scratch")  # untimed: the banks' history is this mode's
                for k, v in edits(ctl, r + 1, mode == "scratch").items():
                    times[mode].setdefault(k, []).append(v)
            C.log(f"round {r + 1}: " + "  ".join(
                f"{m} " + " ".join(f"{k}={v[-1]:.3f}" for k, v in times[m].items())
                for m in times))
        C.log(f"controller RSS after the edits {rss_mb()} MB")
        ns = lab.gw_ns
        ipset_add = None
        try:
            ip = C.unique_set("se")
            C.sh("ip", "netns", "exec", ns, "ipset", "restore", input=f"create {ip} hash:net "
                 f"maxelem {2 * args.prefixes} hashsize 1048576\n"
                 + "".join(f"add {ip} {x}\n" for x in lines if ":" not in x))
            try:
                samples = []
                for i in range(args.rounds):
                    t = time.perf_counter()
                    C.sh("ip", "netns", "exec", ns, "ipset", "add", ip, f"198.51.77.{i + 1}")
                    samples.append(time.perf_counter() - t)
                ipset_add = statistics.median(samples)
            finally:
                C.sh("ip", "netns", "exec", ns, "ipset", "destroy", ip, check=False)
        except Exception as e:  # noqa: BLE001 - the reference is optional
            C.log(f"ipset reference skipped: {e}")
        for k in times["incremental"]:
            inc = statistics.median(times["incremental"][k])
            scr = statistics.median(times["scratch"][k])
            kv[f"{k}_s"] = round(inc, 4)
            kv[f"{k}_scratch_s"] = round(scr, 4)
            kv[f"{k}_over_scratch"] = round(inc / scr, 4)
        if ipset_add is not None:
            kv["ipset_add_s"] = round(ipset_add, 4)
            kv["add_entry_over_ipset_add"] = round(kv["add_entry_s"] / ipset_add, 2)
        kv["prefixes"] = args.prefixes
    finally:
        if ctl is not None:
            ctl.stop(keep=False)
        if lab is not None:
            lab.destroy()
        tmp.cleanup()
    print(C.kv_line(kv))


if __name__ == "__main__":
    main()
