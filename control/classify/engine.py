"""The flow classifier: tracks flows, runs the per-application modules, decides labels.

The same :class:`Classifier` serves the offline ``classify`` command and the live controller
(which builds :class:`~.packet.Packet` objects from ring-buffer samples).  It is pure: no I/O,
no clocks; time comes from the packets and from :meth:`Classifier.expire`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import DECIDE, GIVE_UP, UNKNOWN, Flow, Label, Sample, Spec, app_label, voip_label
from .hosts import HostKnowledge
from .packet import FlowKey, Packet, parse_ip

__all__ = ["Classifier", "Expectation", "HostKnowledge", "Label", "MODULES"]

# The registry: modules in the order they are imported; each has SPEC and match().
MODULES: tuple[str, ...] = (
    "dns", "sip", "stun", "rtp", "dtls", "iax2", "h323", "mgcp", "teamspeak", "mumble",
    "bittorrent", "gnutella", "http", "tls", "quic", "whatsapp", "zoom", "discord",
    "telegram", "wireguard", "openvpn", "netproto", "skinny", "qq", "appsigs", "viber",
)

IDLE_TIMEOUT = {"tcp": 300.0, "udp": 120.0}
DEFAULT_IDLE = 60.0
EXPECT_TTL = 120.0


@dataclass(frozen=True, slots=True)
class Expectation:
    """A flow announced by signalling (SDP): whoever uses ``addr:port`` gets this label."""

    l4: str
    addr: str
    port: int
    app: str
    category: str
    call: str
    expires: float


@dataclass(frozen=True, slots=True)
class _Mod:
    spec: Spec
    match: object
    learn: object


def _load_modules() -> dict[str, list[_Mod]]:
    by_l4: dict[str, list[_Mod]] = {"tcp": [], "udp": [], "icmp": [], "other": []}
    mods = []
    for name in MODULES:
        m = importlib.import_module(f"{__package__}.{name}")
        mods.append(_Mod(m.SPEC, m.match, getattr(m, "learn", None)))
    mods.sort(key=lambda x: x.spec.priority)
    for mod in mods:
        for l4 in mod.spec.l4:
            by_l4[l4].append(mod)
    return by_l4


_REGISTRY: dict[str, list[_Mod]] | None = None


def registry() -> dict[str, list[_Mod]]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load_modules()
    return _REGISTRY


class Classifier:
    """Labels flows from their first ``max_packets`` packets."""

    def __init__(self, max_packets: int = 8, knowledge: HostKnowledge | None = None) -> None:
        self.max_packets = max_packets
        self.knowledge = knowledge if knowledge is not None else HostKnowledge()
        self.new_expectations: list[Expectation] = []
        self._expect: dict[tuple[str, str, int], Expectation] = {}
        self._flows: dict[tuple, Flow] = {}
        self._frags: dict[tuple, tuple] = {}
        self._mods = registry()
        # endpoints (l4, addr, port) seen doing ICE/STUN or call media: later flows from the
        # same socket are call legs too.
        self.call_endpoints: dict[tuple[str, str, int], Label] = {}
        self.sip_calls: dict[str, str] = {}  # SIP Call-ID -> call kind

    # -- expectations ------------------------------------------------------------------
    def expect(self, exp: Expectation) -> None:
        """Register a flow announced by signalling (and queue it for the data path)."""
        k = (exp.l4, exp.addr, exp.port)
        self._expect[k] = exp
        self.new_expectations.append(exp)

    def remember_call_endpoint(self, l4: str, addr: str, port: int, label: Label) -> None:
        if len(self.call_endpoints) > 100_000:
            self.call_endpoints.clear()
        self.call_endpoints[(l4, addr, port)] = label

    def _expected(self, key: FlowKey, ts: float) -> Label | None:
        for ep in ((key.l4, key.dst, key.dport), (key.l4, key.src, key.sport)):
            exp = self._expect.get(ep)
            if exp is not None and exp.expires >= ts:
                return Label(exp.app, exp.category, 0.9, "sdp-expected", exp.call)
        for ep in ((key.l4, key.src, key.sport), (key.l4, key.dst, key.dport)):
            lab = self.call_endpoints.get(ep)
            if lab is not None:
                return Label(lab.app, lab.category, 0.7, "ice-endpoint", lab.call)
        return None

    # -- main entry points ---------------------------------------------------------------
    def feed(self, pkt: Packet) -> Label | None:
        """Account one packet; return its flow's label the first time it is decided."""
        p = parse_ip(pkt.data)
        if p is None:
            return None
        if p.later_fragment:
            return None  # no ports: nothing to classify (offline counts it to its flow)
        canon = p.canonical(pkt.tunnel)
        f = self._flows.get(canon)
        if f is None:
            f = Flow(key=p.key(pkt.tunnel), first_ts=pkt.ts, last_ts=pkt.ts, proto=p.proto)
            self._flows[canon] = f
            if p.l4 in ("tcp", "udp"):
                lab = self._expected(f.key, pkt.ts)
                if lab is not None:
                    return self._decide(f, lab)
        f.last_ts = pkt.ts
        direction = 0 if (p.src == f.key.src and p.sport == f.key.sport) else 1
        sample = Sample(direction, p.payload, pkt.ts, pkt.wire_len, p.tcp_flags)
        if f.label is not None:
            if f.learner is not None and len(f.samples) < self.max_packets:
                f.samples.append(sample)
                f.learner(f, sample, self)
            return None
        f.samples.append(sample)
        if p.payload:
            f.npayload += 1
        for mod in self._mods[f.key.l4]:
            spec = mod.spec
            if spec.needs_payload and not p.payload:
                continue
            if spec.name in f.given_up:
                continue
            if spec.needs_payload and f.npayload > spec.max_packets:
                continue
            try:
                r = mod.match(f, self)
            except (IndexError, ValueError, KeyError, UnicodeError, OverflowError):
                r = GIVE_UP  # a malformed payload must not stop the flow's classification
            if r is None:
                continue
            if r is GIVE_UP:
                f.given_up.add(spec.name)
                if f.tentative is not None and f.state.get("_tentative_by") == spec.name:
                    f.tentative = None  # its author took it back
                continue
            if r.confidence >= DECIDE:
                if mod.learn is not None:
                    f.learner = mod.learn
                    mod.learn(f, sample, self)
                return self._decide(f, r)
            if f.tentative is None or r.confidence >= f.tentative.confidence:
                f.tentative = r
                f.state["_tentative_by"] = spec.name
        if len(f.samples) >= self.max_packets:
            return self._decide(f, self._fallback(f))
        return None

    def flush(self) -> list[tuple[FlowKey, Label]]:
        """Decide every still-open flow (end of capture or idle); return the new labels."""
        out = []
        for f in self._flows.values():
            if f.label is None:
                out.append((f.key, self._decide(f, self._fallback(f))))
        return out

    def expire(self, now: float) -> None:
        """Forget idle flows and expired expectations."""
        for k in [k for k, f in self._flows.items()
                  if now - f.last_ts > IDLE_TIMEOUT.get(f.key.l4, DEFAULT_IDLE)]:
            del self._flows[k]
        for k in [k for k, e in self._expect.items() if e.expires < now]:
            del self._expect[k]

    def label_of(self, key: FlowKey) -> Label | None:
        """The decided label of a tracked flow, if any."""
        f = self._flows.get(_canon(key))
        return f.label if f is not None else None

    # -- internals ----------------------------------------------------------------------
    def _decide(self, f: Flow, lab: Label) -> Label:
        f.label = lab
        if f.learner is None:
            f.samples = []  # nothing more to look at
        return lab

    def _fallback(self, f: Flow) -> Label:
        from . import ports, stats  # small; imported on first use

        cands = []
        if f.tentative is not None:
            cands.append(f.tentative)
        if f.key.l4 in ("tcp", "udp"):
            k = self._knowledge_label(f)
            if k is not None:
                cands.append(k)
        if f.key.l4 == "udp":
            s = stats.match(f, self)
            if s is not None:
                cands.append(s)
        pl = ports.match(f, self)
        if pl is not None:
            cands.append(pl)
        if not cands:
            return UNKNOWN
        return max(cands, key=lambda lab: lab.confidence)

    def _knowledge_label(self, f: Flow) -> Label | None:
        hit = self.knowledge.app_for_addr(f.key.dst) or self.knowledge.app_for_addr(f.key.src)
        if hit is None:
            return None
        app, how = hit
        if f.key.l4 == "udp" and f.npayload:
            lab = app_label(app, f"host:{how}", 0.45, l4="udp")
            if lab.category == "voip":
                return voip_label(app, f"host:{how}", 0.45)
            return lab
        # over TCP the payload had its chance (TLS SNI, HTTP Host): the address is a weak hint
        return app_label(app, f"host:{how}", 0.15, l4=f.key.l4)


def _canon(key: FlowKey) -> tuple:
    a = (key.src, key.sport)
    b = (key.dst, key.dport)
    return (key.l4, a, b, key.tunnel) if a <= b else (key.l4, b, a, key.tunnel)
