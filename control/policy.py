"""The policy: its public file format as pydantic models, loading and validation.

A policy is `default`, named `sets` and ordered `rules` (first match wins), plus
the data path's knobs (`fragments`, `unparsed`, `tunnels`, `flow_verdicts`,
`stateless_drops`).
Errors name the field (and, for files, the line) and never change what runs.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, ValidationError,
                      field_validator, model_validator)

MAX_RULES = 256
# token buckets count bytes (or packets) * 1e9 in signed 64 bits (bpf/xdpgate.c tb_take):
# a second's refill at the rate, and the burst, must fit
BPS_MAX = 64 * 10**9
BURST_MAX = 9 * 10**9
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
TUNNELS = ("gtpu", "gre", "vxlan", "ipip")
ACTIONS = ("allow", "drop", "reject", "rate_limit")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps|b)?\s*$", re.I)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


class PolicyError(ValueError):
    """An invalid policy: `errors` is a list of {loc, msg} with the field path (and line)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join((f"{format_loc(e['loc'])}: " if e.get("loc") else "") +
                                   e["msg"] + (f" (line {e['line']})" if e.get("line") else "")
                                   for e in errors))


def format_loc(loc: tuple | list) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


# ---- value parsers ---------------------------------------------------------

def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR prefix") from None


def parse_ports(v: Any) -> list[tuple[int, int]]:
    """A port, a range 'a-b', or a list of them -> sorted (lo, hi) ranges."""
    items = v if isinstance(v, list) else [v]
    if not items:
        raise ValueError("empty port list")
    out = []
    for it in items:
        if isinstance(it, bool):
            raise ValueError(f"{it!r} is not a port")
        if isinstance(it, int):
            lo = hi = it
        elif isinstance(it, str) and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", it):
            a, _, b = it.partition("-")
            lo, hi = int(a), int(b or a)
        else:
            raise ValueError(f"{it!r} is not a port, a range a-b or a list of them")
        if not (0 <= lo <= hi <= 65535):
            raise ValueError(f"{it!r}: ports are 0-65535 and a range goes low-high")
        out.append((lo, hi))
    return sorted(out)


def parse_rate(v: Any) -> int:
    """'10Mbit', '1.5 Gbit', 800000 -> bits (or packets) per second."""
    if isinstance(v, bool):
        raise ValueError("not a rate")
    if isinstance(v, int) and not 1 <= v <= 10**13:
        raise ValueError(f"{v!r} is out of range (1 to 10Tbit)")
    if isinstance(v, int | float):
        n = float(v)
    else:
        m = _RATE_RE.match(str(v))
        if not m:
            raise ValueError(f"{v!r} is not a rate like 10Mbit, 500kbit or 2000000")
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if n < 1 or n > 10**13:
        raise ValueError(f"{v!r} is out of range (1 to 10Tbit)")
    return int(n)


# ---- models ----------------------------------------------------------------

Strict = ConfigDict(extra="forbid", str_strip_whitespace=True)
Name = Annotated[str, Field(pattern=NAME_RE)]
Action = Literal["allow", "drop", "reject", "rate_limit"]
BaseAction = Literal["allow", "drop"]


def _str_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class Match(BaseModel):
    """What a rule matches; every field given must hold (AND). Lists are OR."""

    model_config = Strict

    src: list[str] | None = None
    dst: list[str] | None = None
    ip: list[str] | None = Field(None, description="either endpoint")
    src_set: list[Name] | None = None
    dst_set: list[Name] | None = None
    ip_set: list[Name] | None = Field(None, description="either endpoint in the set(s)")
    proto: list[str | int] | None = None
    src_port: list[int | str] | int | str | None = None
    dst_port: list[int | str] | int | str | None = None
    port: list[int | str] | int | str | None = Field(None, description="either port")
    app: list[str] | None = None
    category: list[str] | None = None
    call: list[Literal["pstn", "app"]] | None = None
    tunnel: list[Literal["gtpu", "gre", "vxlan", "ipip", "none"]] | None = None
    tunnel_id: list[int] | None = None
    outer_src: list[str] | None = None
    outer_dst: list[str] | None = None

    @field_validator("src", "dst", "ip", "src_set", "dst_set", "ip_set", "app", "category",
                     "call", "tunnel", "outer_src", "outer_dst", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _str_list(v)

    @field_validator("proto", "tunnel_id", mode="before")
    @classmethod
    def _scalar_to_list(cls, v: Any) -> Any:
        return v if v is None or isinstance(v, list) else [v]

    @field_validator("src", "dst", "ip")
    @classmethod
    def _cidrs(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("empty list")
        return [str(parse_cidr(x)) for x in v]

    @field_validator("outer_src", "outer_dst")
    @classmethod
    def _cidr_or_set(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for x in v:
            try:
                out.append(str(parse_cidr(x)))
            except ValueError:
                if not re.match(NAME_RE, x):
                    raise ValueError(f"{x!r} is neither a CIDR nor a set name") from None
                out.append(x)
        return out

    @field_validator("proto")
    @classmethod
    def _proto(cls, v: list | None) -> list | None:
        if v is None:
            return v
        out: list[str | int] = []
        for p in v:
            if isinstance(p, str) and p.lower() in PROTOS:
                out.append(p.lower())
            elif isinstance(p, str) and p.lower() == "any":
                return None
            elif isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 255:
                out.append(p)
            else:
                raise ValueError(f"{p!r} is not tcp, udp, icmp, icmpv6, any or 0-255")
        return out

    @field_validator("src_port", "dst_port", "port")
    @classmethod
    def _ports(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_ports(v)
        return v

    @field_validator("app")
    @classmethod
    def _apps(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from .classify import taxonomy

        for a in v:
            if a not in taxonomy.APPS:
                raise ValueError(f"unknown app {a!r} (GET /api/v1/classes lists them)")
        return v

    @field_validator("category")
    @classmethod
    def _cats(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from .classify import taxonomy

        for c in v:
            if c not in taxonomy.CATEGORIES:
                raise ValueError(f"unknown category {c!r}; one of {', '.join(taxonomy.CATEGORIES)}")
        return v

    @field_validator("tunnel_id")
    @classmethod
    def _tunids(cls, v: list[int] | None) -> list[int] | None:
        for t in v or []:
            if not 0 <= t <= 0xFFFFFFFF:
                raise ValueError(f"{t} is not a 32-bit tunnel id")
        return v

    @model_validator(mode="after")
    def _exclusive(self) -> Match:
        for a, b in (("src", "src_set"), ("dst", "dst_set"), ("ip", "ip_set")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f"give either {a} or {b}, not both (put the CIDRs in a set)")
        return self

    def port_ranges(self, name: str) -> list[tuple[int, int]] | None:
        v = getattr(self, name)
        return None if v is None else parse_ports(v)


class RateLimit(BaseModel):
    model_config = Strict

    bps: int | str | None = Field(None, description="bits per second: 10Mbit, 500kbit, 1000000")
    pps: int | None = Field(None, description="packets per second")
    per: Literal["flow", "rule"] = "rule"
    burst: int | None = Field(None, description="bucket depth in bytes (bps) or packets (pps)")

    @field_validator("bps")
    @classmethod
    def _bps(cls, v: Any) -> Any:
        if v is None:
            return None
        bits = parse_rate(v)
        if bits > BPS_MAX:  # the data path's tokens: bytes * 1e9 a second in 63 bits
            raise ValueError(f"{v!r} is above the {BPS_MAX // 10**9}Gbit a rule can be limited to")
        return bits

    @field_validator("pps")
    @classmethod
    def _pps(cls, v: Any) -> Any:
        if v is not None and not 1 <= v <= 10**9:
            raise ValueError("pps must be 1 to 1e9")
        return v

    @field_validator("burst")
    @classmethod
    def _burst(cls, v: Any) -> Any:
        if v is not None and not 1 <= v <= BURST_MAX:
            raise ValueError(f"burst must be 1 to {BURST_MAX:.0e}")
        return v

    @model_validator(mode="after")
    def _one(self) -> RateLimit:
        if (self.bps is None) == (self.pps is None):
            raise ValueError("give exactly one of bps or pps")
        return self


class Rule(BaseModel):
    """One rule: the policy file's rule, also the REST API's rule body."""

    model_config = Strict

    name: Name
    match: Match = Field(default_factory=Match)
    action: Action
    rate_limit: RateLimit | None = None
    comment: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _rate(self) -> Rule:
        if self.action == "rate_limit" and self.rate_limit is None:
            raise ValueError("action rate_limit needs rate_limit: {bps: ...} or {pps: ...}")
        if self.action != "rate_limit" and self.rate_limit is not None:
            raise ValueError("rate_limit is only for action: rate_limit")
        return self


class SetFile(BaseModel):
    model_config = Strict
    file: str


SetDef = list[str] | SetFile


class Tunnels(BaseModel):
    model_config = Strict
    gtpu: StrictBool = True
    gre: StrictBool = True
    vxlan: StrictBool = True
    ipip: StrictBool = True


class Policy(BaseModel):
    model_config = Strict

    default: BaseAction = "allow"
    fragments: BaseAction = Field("allow", description="non-first IP fragments (no ports)")
    unparsed: BaseAction = Field("allow", description="frames that are not IP, or malformed")
    tunnels: Tunnels = Field(default_factory=Tunnels)
    flow_verdicts: Literal["override", "rules"] = Field(
        "override", description="a verdict the controller wrote for a flow beats the rules")
    stateless_drops: StrictBool = Field(
        False, description="a flow whose first packet a rule drops, where no label could change "
        "that (no rule up to it names app, category or call), gets no flow entry: a flood from "
        "spoofed sources cannot push live flows out of the table")
    sets: dict[Name, SetDef] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)

    @field_validator("sets")
    @classmethod
    def _sets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, d in v.items():
            if isinstance(d, list):
                for i, x in enumerate(d):
                    try:
                        parse_cidr(x)
                    except ValueError as e:
                        raise ValueError(f"set {name!r} entry {i}: {e}") from None
        return v

    @model_validator(mode="after")
    def _refs(self) -> Policy:
        seen: set[str] = set()
        for i, r in enumerate(self.rules):
            if r.name in seen:
                raise ValueError(f"rules[{i}]: duplicate rule name {r.name!r}")
            seen.add(r.name)
            m = r.match
            refs = (m.src_set or []) + (m.dst_set or []) + (m.ip_set or []) + [
                x for x in (m.outer_src or []) + (m.outer_dst or []) if re.match(NAME_RE, x)
                and not _is_cidr(x)]
            for s in refs:
                if s not in self.sets:
                    raise ValueError(f"rules[{i}] ({r.name}): unknown set {s!r}")
        return self


def _is_cidr(x: str) -> bool:
    try:
        parse_cidr(x)
        return True
    except ValueError:
        return False


# ---- loading ---------------------------------------------------------------

def _line_of(node: Any, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def errors_from(e: ValidationError, root: Any = None) -> list[dict[str, Any]]:
    out = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if p not in ("list[str]", "SetFile", "function-after[_one_or_many(), list[str]]"))
        msg = err["msg"].removeprefix("Value error, ")
        item = {"loc": list(loc), "msg": msg}
        line = _line_of(root, loc) if root is not None else None
        if line:
            item["line"] = line
        out.append(item)
    return out


def from_dict(data: Any) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(errors_from(e)) from None


def revalidated(policy: Policy) -> Policy:
    """`policy` validated again as a whole, after an edit of a copy of it: pydantic does not
    check edits made to a model (a set deleted that a rule still names)."""
    return from_dict(policy.model_dump(mode="json", exclude_none=True))


def from_yaml(text: str, source: str = "<policy>") -> Policy:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise PolicyError([{"loc": [], "msg": f"{source}: not valid YAML: {getattr(e, 'problem', e)}",
                            **({"line": mark.line + 1} if mark else {})}]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([{"loc": [], "msg": f"{source}: the policy must be a mapping"}])
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(errors_from(e, root)) from None


def load_file(path: str | Path) -> Policy:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PolicyError([{"loc": [], "msg": f"can't read {p}: {e.strerror}"}]) from None
    return from_yaml(text, str(p))


def to_yaml(policy: Policy) -> str:
    return yaml.safe_dump(policy.model_dump(mode="json", exclude_none=True), sort_keys=False)
