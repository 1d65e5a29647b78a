"""The REST API's request and response bodies: a Create / Update / Public family per resource.

A rule's JSON is the policy file's rule (control.policy.Rule) and a whole policy is the
policy file (control.policy.Policy): the file format has one home, the API reuses it.
Response models are permissive about extra keys so a controller that reports more does
not break clients; request models are strict (extra fields are 422).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xdpgate.control.classify import taxonomy
from xdpgate.control.policy import Policy, Rule

IFNAME_RE = r"^[A-Za-z0-9_.@-]{1,15}$"
Open = ConfigDict(extra="allow")
Strict = ConfigDict(extra="forbid")

__all__ = ["Policy", "Rule"]  # re-exported: the file format is the API format


class ErrorItem(BaseModel):
    model_config = Open
    loc: list[str | int]
    msg: str
    type: str | None = None
    line: int | None = None


class ErrorPublic(BaseModel):
    """Every error: a message, or FastAPI-style items naming the field (422)."""

    detail: str | list[ErrorItem]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# ---- status and interfaces --------------------------------------------------

class InterfacePublic(BaseModel):
    model_config = Open
    name: str
    ifindex: int
    mode: str
    netns: str | None = None


class InterfaceCreate(BaseModel):
    model_config = Strict
    name: str = Field(pattern=IFNAME_RE, description="interface name as the system knows it")
    mode: Literal["native", "skb"] = "native"


class StatusPublic(BaseModel):
    model_config = Open
    version: str
    uptime_s: float
    policy_version: int
    etag: str
    instance: str | None = None
    fail_mode: str | None = None
    adopted: bool = False
    interfaces: list[InterfacePublic] = []


# ---- policy -----------------------------------------------------------------

class Changed(BaseModel):
    """A write went through; `etag` is the new policy's (send it as If-Match next time)."""

    etag: str


class ValidationReport(BaseModel):
    valid: Literal[True] = True
    warnings: list[str] = []


# ---- rules ------------------------------------------------------------------

class RuleCreate(Rule):
    """A new rule: exactly the policy file's rule."""


class RuleUpdate(Rule):
    """The rule's new content; a different `name` renames it."""


class RulePublic(Rule):
    position: int = Field(description="0-based place in the ordered rule list (first match wins)")


# ---- sets -------------------------------------------------------------------

class SetEntries(BaseModel):
    """Set entries as JSON; the same endpoints also take text/plain, one CIDR a line."""

    model_config = Strict
    entries: list[str] = Field(description="IPv4/IPv6 addresses or CIDR prefixes")


class SetSummary(BaseModel):
    model_config = Open
    name: str
    count: int
    source: str


class SetPublic(BaseModel):
    name: str
    count: int
    entries: list[str]


class SetChanged(BaseModel):
    name: str
    count: int


# ---- flows, stats, classes --------------------------------------------------

Verdict = Literal["allow", "drop", "reject", "rate_limit", "none", "pending"]
FlowSort = Literal["bytes", "packets", "age", "idle"]


class FlowQuery(BaseModel):
    """Filters for GET /flows (all optional, combined with AND)."""

    model_config = Strict
    app: str | None = Field(None, description="application label, see GET /classes")
    category: str | None = Field(None, description="category label, see GET /classes")
    ip: str | None = Field(None, description="either endpoint (address or CIDR)")
    port: int | None = Field(None, ge=0, le=65535, description="either port")
    verdict: Verdict | None = None
    sort: FlowSort = "bytes"
    limit: int = Field(100, ge=1, le=10000)

    @field_validator("app")
    @classmethod
    def _app(cls, v: str | None) -> str | None:
        if v is not None and v not in taxonomy.APPS:
            raise ValueError(f"unknown app {v!r} (GET /api/v1/classes lists them)")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str | None) -> str | None:
        if v is not None and v not in taxonomy.CATEGORIES:
            raise ValueError(f"unknown category {v!r}; one of {', '.join(taxonomy.CATEGORIES)}")
        return v

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address or CIDR prefix") from None


class FlowPublic(BaseModel):
    model_config = Open
    l4: str | int
    src: str
    sport: int
    dst: str
    dport: int
    tunnel: str | None = None
    tunnel_id: int | None = None
    outer_src: str | None = None
    outer_dst: str | None = None
    pkts_fwd: int
    pkts_rev: int
    bytes_fwd: int
    bytes_rev: int
    age_s: float
    idle_s: float
    tcp_flags: str | int | None = None
    app: str | None = None
    category: str | None = None
    call: str | None = None
    verdict: str | None = None
    rule: str | None = None


class Counter(BaseModel):
    model_config = Open
    packets: int = 0
    bytes: int = 0


class NamedCounter(Counter):
    name: str


class ReasonAction(Counter):
    reason: str
    verdict: str


class StatsPublic(BaseModel):
    model_config = Open
    by_action: dict[str, Any] = {}
    by_reason: dict[str, Any] = {}
    by_reason_action: list[ReasonAction] = []
    rules: list[NamedCounter] = []
    default: Counter = Counter()
    apps: list[dict[str, Any]] = []
    categories: list[dict[str, Any]] = []
    tunnels: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    events: dict[str, int] = {}
    policy_load_errors: int = 0


class ClassesPublic(BaseModel):
    model_config = Open
    categories: list[Any]
    apps: list[Any]
    calls: list[Any]

