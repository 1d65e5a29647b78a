"""Read what the data path counted and which flows it holds, as plain dicts.

Works on any MapSet: the controller's own or a running filter's pins.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from . import layout
from .layout import Event, Reason, Verdict
from .maps import MapSet, addr16, addr_str

TUN_NAMES = {t.value: t.name.lower() for t in layout.Tunnel}
ACTION_NAMES = {a.value: a.name.lower() for a in layout.Action}
TCP_FLAGS = "FSRPAUEC"
L4 = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}


def _taxonomy():
    from .classify import taxonomy

    return taxonomy


def tcp_flags_str(v: int) -> str:
    return "".join(c for i, c in enumerate(TCP_FLAGS) if v & (1 << i)) or "-"


def counters(maps: MapSet) -> dict[str, Any]:
    """Packets and bytes by reason and verdict, by verdict, by reason, and events."""
    cells = maps["counters"].counters()
    rows = []
    by_verdict: dict[str, dict[str, int]] = {v.name.lower(): {"packets": 0, "bytes": 0}
                                             for v in Verdict}
    by_reason: dict[str, dict[str, int]] = {r.name.lower(): {"packets": 0, "bytes": 0}
                                            for r in Reason}
    for r in Reason:
        for v in Verdict:
            i = r * layout.V_MAX + v
            pk, by = cells[i] if i < len(cells) else (0, 0)
            if pk:
                rows.append({"reason": r.name.lower(), "verdict": v.name.lower(), "packets": pk,
                             "bytes": by})
            by_verdict[v.name.lower()]["packets"] += pk
            by_verdict[v.name.lower()]["bytes"] += by
            by_reason[r.name.lower()]["packets"] += pk
            by_reason[r.name.lower()]["bytes"] += by
    ev = maps["events"].counters()
    events = {e.name.lower(): (ev[e][0] if e < len(ev) else 0) for e in Event}
    return {"by_reason_action": rows, "by_action": by_verdict, "by_reason": by_reason,
            "events": events}


def dims(maps: MapSet, flows_by_app: dict[str, int] | None = None,
         flows_by_cat: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per app, category, tunnel type and call kind packets/bytes (and labelled flows)."""
    tx = _taxonomy()
    cells = maps["dims"].counters()

    def cell(i: int) -> tuple[int, int]:
        return cells[i] if i < len(cells) else (0, 0)

    apps, cats, tuns, calls = [], [], [], []
    for aid in range(min(len(tx.APPS), layout.APP_MAX)):
        pk, by = cell(layout.D_APP + aid)
        n = (flows_by_app or {}).get(tx.APPS[aid], 0)
        if pk or n:
            apps.append({"app": tx.APPS[aid], "packets": pk, "bytes": by, "flows": n})
    for cid in range(min(len(tx.CATEGORIES), layout.CAT_MAX)):
        pk, by = cell(layout.D_CAT + cid)
        n = (flows_by_cat or {}).get(tx.CATEGORIES[cid], 0)
        if pk or n:
            cats.append({"category": tx.CATEGORIES[cid], "packets": pk, "bytes": by, "flows": n})
    for t, name in TUN_NAMES.items():
        pk, by = cell(layout.D_TUN + t)
        if pk:
            tuns.append({"tunnel": name, "packets": pk, "bytes": by})
    for c, name in enumerate(tx.CALL_KINDS[: layout.CALL_MAX]):
        pk, by = cell(layout.D_CALL + c)
        if pk:
            calls.append({"call": name, "packets": pk, "bytes": by})
    key = lambda d: -d["bytes"]  # noqa: E731
    return {"apps": sorted(apps, key=key), "categories": sorted(cats, key=key),
            "tunnels": tuns, "calls": calls}


def flow_view(k: layout.FlowKey, f: layout.Flow, now_ns: int,
              rule_names: dict[int, list[str]] | None = None,
              pending: layout.Class | None = None, flow_first: bool = True) -> dict[str, Any]:
    """One flow, client first (the side that sent the first packet). A label still in the
    mailbox (the flow has had no packet since) is shown as the flow's class. The rule is
    named by the names of the policy generation its verdict was cached under (a flow idle
    since a policy change holds a slot of the policy before; none when that is unknown).
    A controller verdict is the flow's verdict where the policy lets it beat the rules
    (`flow_first`, policy `flow_verdicts: override`), as in the data path."""
    tx = _taxonomy()
    if pending is not None and not f.flags & layout.FlowFlag.CLASSIFIED:
        f = layout.Flow.from_buffer_copy(f)
        f.app, f.category, f.call = pending.app, pending.category, pending.call
        f.flags |= layout.FlowFlag.CLASSIFIED
    a, b = addr_str(k.addr_a), addr_str(k.addr_b)
    pa, pb = _port(k.port_a), _port(k.port_b)
    oa, ob = addr_str(f.outer_a), addr_str(f.outer_b)
    if f.init_is_a:
        src, sport, dst, dport, osrc, odst = a, pa, b, pb, oa, ob
    else:
        src, sport, dst, dport, osrc, odst = b, pb, a, pa, ob, oa
    classified = bool(f.flags & layout.FlowFlag.CLASSIFIED)
    act = f.action[0] if f.action[0] != layout.Action.NONE else f.action[1]
    rule = f.rule[0] if f.rule[0] != layout.RULE_NONE else f.rule[1]
    if flow_first and f.override != layout.Action.NONE:
        act, rule = f.override, layout.RULE_NONE
    rule_name = None
    names = (rule_names or {}).get(f.pol_gen)
    if names is not None and rule != layout.RULE_NONE and rule < len(names):
        rule_name = names[rule]
    return {
        "l4": L4.get(k.proto, "other"), "proto": k.proto,
        "src": src, "sport": sport, "dst": dst, "dport": dport,
        "tunnel": TUN_NAMES.get(k.tun_type, str(k.tun_type)), "tunnel_id": k.tun_id,
        "outer_src": osrc if k.tun_type else None, "outer_dst": odst if k.tun_type else None,
        "pkts_fwd": f.pkts[0], "pkts_rev": f.pkts[1], "bytes_fwd": f.bytes[0],
        "bytes_rev": f.bytes[1],
        "age_s": round(max(0, now_ns - f.first_ns) / 1e9, 3),
        "idle_s": round(max(0, now_ns - f.last_ns) / 1e9, 3),
        "tcp_flags": f"{tcp_flags_str(f.tcp_flags[0])}/{tcp_flags_str(f.tcp_flags[1])}",
        "app": tx.app_name(f.app) if classified and f.app < len(tx.APPS) else (
            "unknown" if classified else "unclassified"),
        "category": tx.category_name(f.category) if classified and
        f.category < len(tx.CATEGORIES) else ("unknown" if classified else "unclassified"),
        "call": tx.CALL_KINDS[f.call] if f.call < len(tx.CALL_KINDS) else "none",
        "verdict": ACTION_NAMES.get(act, "pending"),
        "rule": rule_name,
    }


def _port(p: int) -> int:
    return ((p & 0xFF) << 8) | (p >> 8)


def flows(maps: MapSet, *, app: str | None = None, category: str | None = None,
          ip: str | None = None, port: int | None = None, verdict: str | None = None,
          sort: str = "bytes", limit: int = 100,
          rule_names: dict[int, list[str]] | list[str] | None = None) -> list[dict[str, Any]]:
    """Flows matching the filters, best first by `sort`. The table is copied out once
    (FlowTable.snapshot), filtered and ranked as arrays; only the rows returned are turned
    into dicts, so a table of a million flows answers in well under a second. `rule_names`:
    per policy generation (Applier.gen_names), or a list for the running one."""
    import ctypes as ct

    import numpy as np

    cfg = maps["config"].get(ct.c_uint32(0))
    gen = cfg.gen if cfg is not None else 0
    if isinstance(rule_names, list):
        rule_names = {gen: rule_names}
    header = maps["policy"].get(ct.c_uint32(gen & 1))
    flow_first = bool(header.flow_first) if header is not None else True

    tx = _taxonomy()
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    rows = maps.flowtable.snapshot()
    k, f = rows["key"], rows["val"]
    keep = np.ones(len(rows), dtype=bool)
    # labels still in the mailbox count as the class of flows not yet classified
    pending = {bytes(key): v for key, v in maps["mailbox"].items()}
    classified = (f["flags"] & layout.FlowFlag.CLASSIFIED) != 0
    if app or category:
        labelled = classified.copy()
        eff_app, eff_cat = f["app"].astype(np.int32), f["category"].astype(np.int32)
        if pending:
            uncl = np.flatnonzero(~classified)
            raw, ks = k[uncl].tobytes(), k.dtype.itemsize
            for j, i in enumerate(uncl):
                pend = pending.get(raw[j * ks:(j + 1) * ks])
                if pend is not None:
                    labelled[i], eff_app[i], eff_cat[i] = True, pend.app, pend.category
        keep &= labelled
        if app:
            keep &= eff_app == (tx.app_id(app) if app in tx.APPS else -1)
        if category:
            keep &= eff_cat == (tx.category_id(category) if category in tx.CATEGORIES else -1)
    if port is not None:
        nport = _port(port)  # the key holds ports in network order
        keep &= (k["port_a"] == nport) | (k["port_b"] == nport)
    if ip:
        net = ipaddress.ip_network(ip, strict=False)
        lo = int.from_bytes(addr16(str(net.network_address)), "big")
        hi = int.from_bytes(addr16(str(net.broadcast_address)), "big")
        keep &= _in_range(k["addr_a"], lo, hi) | _in_range(k["addr_b"], lo, hi)
    if verdict is not None:
        none = layout.Action.NONE
        act = np.where(f["action"][:, 0] != none, f["action"][:, 0], f["action"][:, 1])
        if flow_first:
            act = np.where(f["override"] != none, f["override"], act)
        if verdict == "pending":
            keep &= ~np.isin(act, list(ACTION_NAMES))
        else:
            keep &= np.isin(act, [c for c, n in ACTION_NAMES.items() if n == verdict])
    idx = np.flatnonzero(keep)
    rank = {
        "packets": lambda: f["pkts"].sum(axis=1, dtype=np.uint64),
        "age": lambda: -f["first_ns"].astype(np.int64),
        "idle": lambda: -f["last_ns"].astype(np.int64),  # the longest idle first
    }.get(sort, lambda: f["bytes"].sum(axis=1, dtype=np.uint64))()[idx]
    n = max(0, min(limit, len(idx)))
    if 0 < n < len(idx):  # the n best, then those in order
        part = np.argpartition(rank, len(rank) - n)[len(rank) - n:]
        idx, rank = idx[part], rank[part]
    top = idx[np.argsort(rank, kind="stable")[::-1]][:n]
    out = []
    for i in top:
        key = layout.FlowKey.from_buffer_copy(k[i].tobytes())
        fl = layout.Flow.from_buffer_copy(f[i].tobytes())
        pend = None if classified[i] else pending.get(bytes(key))
        out.append(flow_view(key, fl, now, rule_names, pend, flow_first))
    return out


def _in_range(addrs, lo: int, hi: int):
    """Which 16-byte big-endian addresses (an (n, 16) uint8 array) lie in [lo, hi]."""
    import numpy as np

    halves = np.ascontiguousarray(addrs).view(">u8").reshape(-1, 2)
    top, bottom = halves[:, 0], halves[:, 1]
    lo_t, lo_b, hi_t, hi_b = lo >> 64, lo & (2**64 - 1), hi >> 64, hi & (2**64 - 1)
    above = (top > lo_t) | ((top == lo_t) & (bottom >= lo_b))
    below = (top < hi_t) | ((top == hi_t) & (bottom <= hi_b))
    return above & below


def pinned_maps(instance: str = "default", netns: str | None = None) -> MapSet:
    """The maps of the filter running for this instance and namespace, from bpffs."""
    from .errors import XgError
    from .loader import find_pin_dirs
    from .maps import sizes_from_pins

    dirs = [d for d in find_pin_dirs(instance, netns) if (d / "flows").exists()]
    if not dirs:
        raise XgError("read the running filter's maps", f"(instance {instance})",
                      "no pinned maps found", "is `xdpgate run` running as root on this host?")
    return MapSet.from_pins(sizes_from_pins(dirs[-1]), dirs[-1])


def default_hits(maps: MapSet) -> tuple[int, int]:
    """Packets and bytes the default decided, in the cells of both banks (the bank of the
    policy before keeps its count until it is rewritten)."""
    import ctypes as ct

    hits, rm = maps["rule_hits"], maps.sizes.rule_max
    pk = by = 0
    for bank in (0, 1):
        v = hits.get(ct.c_uint32(bank * (rm + 1) + rm))
        if v is not None:
            p, n = hits.sum(v)
            pk, by = pk + p, by + n
    return pk, by


def pinned_stats(maps: MapSet, rule_names: list[str]) -> dict[str, Any]:
    """Counters as `stats()` reports them, from pinned maps and the policy's rule names."""
    import ctypes as ct

    out = counters(maps)
    cfg = maps["config"].get(ct.c_uint32(0))
    bank = (cfg.gen & 1) if cfg is not None else 0
    rm = maps.sizes.rule_max
    hits = maps["rule_hits"]
    rows = []
    for slot, name in enumerate(rule_names[:rm]):
        v = hits.get(ct.c_uint32(bank * (rm + 1) + slot))
        pk, by = hits.sum(v) if v is not None else (0, 0)
        rows.append({"name": name, "packets": pk, "bytes": by})
    pk, by = default_hits(maps)
    out["rules"] = rows
    out["default"] = {"packets": pk, "bytes": by}
    out.update(dims(maps))
    return out
