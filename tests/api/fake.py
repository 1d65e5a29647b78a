"""An in-memory controller with the real one's contract, for testing the API without a kernel.

Policies are validated with control/policy.py; sets uploaded through the API are kept
beside the policy (as the real controller keeps big sets in files), so a million-line
upload costs a parse, not a pydantic model of a million strings.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xdpgate.control import policy as pol
from xdpgate.control.classify import taxonomy
from xdpgate.control.controller import ConflictError, NotFound, policy_without_set
from xdpgate.control.errors import XgError
from xdpgate.control.metrics import Metrics
from xdpgate.control.policy import Policy, PolicyError, SetFile
from xdpgate.control.sets import parse_prefix, prefix_str


FLOW = {"l4": "udp", "proto": 17, "src": "10.77.1.2", "sport": 40000, "dst": "10.77.2.2",
        "dport": 5060, "tunnel": "none", "tunnel_id": 0, "outer_src": None, "outer_dst": None,
        "pkts_fwd": 10, "pkts_rev": 8, "bytes_fwd": 1500, "bytes_rev": 900, "age_s": 3.5,
        "idle_s": 0.2, "tcp_flags": "-/-", "app": "sip", "category": "voip", "call": "none",
        "verdict": "allow", "rule": None}


def _parse(entries: list[str] | str) -> list[str]:
    """Parse and normalise entries, reporting errors the way the controller does."""
    if isinstance(entries, str):
        out, src = [], entries.splitlines()
        for i, line in enumerate(src, 1):
            s = line.split("#", 1)[0].strip()
            if not s:
                continue
            try:
                out.append(prefix_str(parse_prefix(s)))
            except ValueError as e:
                raise PolicyError([{"loc": ["sets"], "msg": str(e), "line": i}]) from None
        return out
    out = []
    for i, e in enumerate(entries):
        try:
            out.append(prefix_str(parse_prefix(str(e).strip())))
        except ValueError as ex:
            raise PolicyError([{"loc": ["entries", i], "msg": str(ex)}]) from None
    return out


class FakeController:
    def __init__(self, state_dir: Path) -> None:
        self.version = "0.0.0-fake"
        self.state_dir = Path(state_dir)
        self.lock = threading.RLock()
        self.policy = Policy()
        self.api_sets: dict[str, list[str]] = {}
        self.policy_version = 0
        self.policy_load_errors = 0
        self.started = time.time()
        self.attached: dict[str, dict[str, Any]] = {}
        self.audit_log: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_next: XgError | None = None  # make the next change fail in "the kernel"
        self.flow_rows = [dict(FLOW), {**FLOW, "l4": "tcp", "proto": 6, "sport": 40001,
                                        "dport": 443, "app": "whatsapp", "category": "chat",
                                        "verdict": "drop", "rule": "r1", "tcp_flags": "SA/SA"}]
        self.metrics = Metrics(self)

    @property
    def etag(self) -> str:
        return f'"v{self.policy_version}"'

    def _commit(self, new: Policy, actor: str, what: str, if_match: str | None) -> str:
        with self.lock:
            if if_match is not None and if_match not in (self.etag, "*"):
                raise ConflictError(f"the policy changed (now {self.etag}); re-read it and retry")
            if self.fail_next is not None:
                err, self.fail_next = self.fail_next, None
                self.policy_load_errors += 1
                raise err
            self.policy = new
            self.policy_version += 1
            self.audit(actor, what, {"policy_version": self.policy_version})
            return self.etag

    # ---- policy
    def status(self) -> dict[str, Any]:
        return {"version": self.version, "uptime_s": round(time.time() - self.started, 1),
                "policy_version": self.policy_version, "etag": self.etag, "instance": "fake",
                "fail_mode": "open", "adopted": False, "interfaces": self.interfaces()}

    def get_policy(self) -> tuple[Policy, str]:
        with self.lock:
            return self.policy.model_copy(deep=True), self.etag

    def validate_policy(self, policy: Policy) -> list[str]:
        for name, d in policy.sets.items():
            if isinstance(d, SetFile) and name not in self.api_sets:
                raise PolicyError([{"loc": ["sets", name, "file"],
                                    "msg": f"can't read {d.file}: No such file or directory"}])
        return ["default drop with no rules drops everything"] if (
            policy.default == "drop" and not policy.rules) else []

    def apply_policy(self, policy: Policy, *, actor: str, if_match: str | None = None) -> str:
        with self.lock:
            self.validate_policy(policy)
            return self._commit(policy, actor, "policy.apply", if_match)

    def edit_policy(self, fn: Callable[[Policy], Policy], *, actor: str, what: str,
                    if_match: str | None = None) -> str:
        with self.lock:
            new = fn(self.policy.model_copy(deep=True))
            new = pol.revalidated(new)
            return self._commit(new, actor, what, if_match)

    # ---- sets
    def get_set(self, name: str) -> list[str]:
        with self.lock:
            d = self.policy.sets.get(name)
            if d is None:
                raise NotFound(f"no set named {name!r}")
            return list(self.api_sets[name]) if isinstance(d, SetFile) else [
                prefix_str(parse_prefix(x)) for x in d]

    def sets_summary(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"name": n, "count": len(self.get_set(n)),
                     "source": "api" if n in self.api_sets else "inline"}
                    for n in self.policy.sets]

    def put_set(self, name: str, entries: list[str] | str, *, actor: str,
                if_match: str | None = None) -> int:
        parsed = list(dict.fromkeys(_parse(entries)))
        with self.lock:
            new = self.policy.model_copy(deep=True)
            new.sets[name] = SetFile(file=str(self.state_dir / "sets" / f"{name}.txt"))
            self._commit(new, actor, f"set.put {name}", if_match)
            self.api_sets[name] = parsed
            return len(parsed)

    def add_set_entries(self, name: str, entries: list[str] | str, *, actor: str) -> int:
        with self.lock:
            cur = self.get_set(name)
            return self.put_set(name, cur + _parse(entries), actor=actor)

    def remove_set_entries(self, name: str, entries: list[str] | str, *, actor: str) -> int:
        with self.lock:
            cur, gone = self.get_set(name), set(_parse(entries))
            return self.put_set(name, [e for e in cur if e not in gone], actor=actor)

    def delete_set(self, name: str, *, actor: str) -> None:
        with self.lock:
            new = policy_without_set(self.policy, name)
            self._commit(new, actor, f"set.delete {name}", None)
            self.api_sets.pop(name, None)

    # ---- interfaces
    def interfaces(self) -> list[dict[str, Any]]:
        return list(self.attached.values())

    def attach_interface(self, name: str, mode: str = "native", *, actor: str) -> dict[str, Any]:
        if not name.startswith("veth"):
            raise XgError("attach XDP program to", name, "No such device",
                          "check the name with `ip link`")
        self.attached[name] = {"name": name, "ifindex": 7 + len(self.attached), "mode": mode,
                               "netns": None}
        self.audit(actor, "interface.attach", {"name": name})
        return self.attached[name]

    def detach_interface(self, name: str, *, actor: str) -> None:
        if self.attached.pop(name, None) is None:
            raise NotFound(f"xdpgate is not attached to {name!r}")
        self.audit(actor, "interface.detach", {"name": name})

    # ---- observation
    def flows(self, *, app: str | None = None, category: str | None = None, ip: str | None = None,
              port: int | None = None, verdict: str | None = None, sort: str = "bytes",
              limit: int = 100) -> list[dict[str, Any]]:
        rows = [f for f in self.flow_rows if (app is None or f["app"] == app)
                and (category is None or f["category"] == category)
                and (verdict is None or f["verdict"] == verdict)
                and (port is None or port in (f["sport"], f["dport"]))]
        return copy.deepcopy(rows[:limit])

    def stats(self) -> dict[str, Any]:
        return {
            "by_action": {"pass": {"packets": 90, "bytes": 9000},
                          "drop": {"packets": 10, "bytes": 1000}, "tx": {"packets": 0, "bytes": 0}},
            "by_reason": {"rule": {"packets": 40, "bytes": 4000},
                          "default": {"packets": 60, "bytes": 6000}},
            "by_reason_action": [{"reason": "rule", "verdict": "drop", "packets": 10,
                                  "bytes": 1000}],
            "rules": [{"name": r.name, "packets": 3, "bytes": 300} for r in self.policy.rules],
            "default": {"packets": 60, "bytes": 6000},
            "apps": [{"app": "sip", "packets": 18, "bytes": 2400, "flows": 1}],
            "categories": [{"category": "voip", "packets": 18, "bytes": 2400, "flows": 1}],
            "tunnels": [{"tunnel": "gtpu", "packets": 2, "bytes": 200}],
            "calls": [{"call": "pstn", "packets": 5, "bytes": 500}],
            "events": {"flow_new": 2, "sample_sent": 7, "sample_lost": 1},
            "policy_load_errors": self.policy_load_errors,
            "policy_version": self.policy_version,
            "sampler": {"samples": 7, "errors": 0, "lost": 1},
        }

    def classes(self) -> dict[str, Any]:
        return {"categories": list(taxonomy.CATEGORIES), "apps": list(taxonomy.APPS),
                "calls": list(taxonomy.CALL_KINDS)}

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        self.audit_log.append((actor, action, detail))
