"""Test harness for the data path: one loaded filter, packets through BPF_PROG_TEST_RUN.

Privileged by nature: in CI we are root, so a failure to load is a test failure,
never a skip.
"""

from __future__ import annotations

import ctypes as ct
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xdpgate.control import bpfsys, compile as comp, layout, policy as pol, sets
from xdpgate.control.apply import Applier
from xdpgate.control.layout import Reason, Verdict
from xdpgate.control.loader import Filter

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


class DP:
    """A loaded filter with helpers to set policy, send frames and read counters."""

    def __init__(self, flt: Filter) -> None:
        self.f = flt
        self.maps = flt.maps
        self.ap = Applier(flt.maps)
        if not flt.adopted:
            self.ap.assume_empty()  # create one DP per loaded filter

    def apply(self, policy: str | pol.Policy | dict, incremental: bool = False) -> int:
        """Compile and apply `policy`; `incremental` starts the compile from the policy
        applied last, as the controller does."""
        if isinstance(policy, str):
            policy = pol.from_yaml(policy)
        elif isinstance(policy, dict):
            policy = pol.from_dict(policy)
        w = comp.compile_policy(policy, sets.resolve(policy), self.f.sizes, self.ap.classes,
                                prev=self.ap.last if incremental else None)
        return self.ap.apply(w)

    def run(self, frame: Any) -> int:
        """XDP action for one frame (scapy packet or bytes)."""
        return self.run_full(frame)[0]

    def run_full(self, frame: Any) -> tuple[int, bytes]:
        rv, out, _ = bpfsys.test_run(self.f.prog_fd, bytes(frame))
        return rv, out

    def counters(self) -> dict[tuple[Reason, Verdict], tuple[int, int]]:
        cells = self.maps["counters"].counters()
        out = {}
        for r in Reason:
            for v in Verdict:
                i = r * layout.V_MAX + v
                out[(r, v)] = cells[i] if i < len(cells) else (0, 0)
        return out

    def count(self, reason: Reason, verdict: Verdict) -> int:
        return self.counters()[(reason, verdict)][0]

    def events(self) -> dict[layout.Event, int]:
        cells = self.maps["events"].counters()
        return {e: (cells[e][0] if e < len(cells) else 0) for e in layout.Event}

    def flows(self) -> list[tuple[layout.FlowKey, layout.Flow]]:
        return list(self.maps.flowtable.items())

    def clear(self, *names: str) -> None:
        for n in names or ("flows", "mailbox", "expect"):
            if n == "flows":
                self.maps.flowtable.clear()
                continue
            m = self.maps[n]
            for k in list(m.keys()):
                m.delete(k)

    def reset(self) -> None:
        """Empty flow state and zero every counter (policy stays)."""
        self.clear()
        for n in ("counters", "events", "dims", "rule_hits"):
            m = self.maps[n]
            zero = (layout.Counter * m.ncpu)()
            for k, _ in list(m.items()):
                m.set(k, zero)
        self.maps["expect_live"].set(u32(0), ct.c_uint64(0))
        self.ap.retired_hits.clear()
        self.ap.retired_default = (0, 0)

    def config(self, **fields: int) -> None:
        self.ap.write_config(**fields)

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def u32(v: int) -> ct.c_uint32:
    return ct.c_uint32(v)


def way_seen(maps: Any, key: layout.FlowKey) -> int:
    """The way clock time at which the flow table last saw `key`'s flow."""
    _, w, fs = maps.flowtable.find(key)
    return fs.way[w] >> 32


def set_way_seen(maps: Any, key: layout.FlowKey, seen: int) -> None:
    """Make the flow table believe `key`'s flow was last seen at way clock time `seen`."""
    si, w, fs = maps.flowtable.find(key)
    fs.way[w] = (seen << 32) | (fs.way[w] & 0xFFFFFFFF)
    maps["flowsets"].set(ct.c_uint32(si), fs)


@contextmanager
def idle_controller(d: Path, instance: str) -> Iterator[Any]:
    """A started controller on no interface (its program is run by test-run), with a
    default-allow policy, its state under `d` and a unique instance name starting with
    `instance`; stopped, pins removed, at the end."""
    from xdpgate.control.controller import Controller, RunConfig

    assert os.geteuid() == 0, "the controller tests need root (CI runs as root)"
    pfile = d / "policy.yaml"
    pfile.write_text("default: allow\n")
    c = Controller(RunConfig(policy_file=pfile, state_dir=d / "state",
                             instance=instance + secrets.token_hex(3), classify=False))
    c.start()
    try:
        yield c
    finally:
        c.stop(keep=False)

