"""Types shared by the classifier engine and the per-application modules.

A module (``sip.py``, ``stun.py``...) has three parts: its facts as data tables at the top, a
``match(flow, ctx)`` that returns a :class:`Label`, ``None`` (not yet) or :data:`GIVE_UP`, and a
``SPEC`` (:class:`Spec`) saying which L4 it reads, whether it needs payload, how many payload
packets of a flow it may look at and its priority (lower runs first).
"""

from __future__ import annotations

import struct

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .taxonomy import category_of

if TYPE_CHECKING:
    from .packet import FlowKey


@dataclass(frozen=True, slots=True)
class Label:
    """A flow's verdict: app and category names from taxonomy.py, how sure, and why."""

    app: str
    category: str
    confidence: float
    reason: str
    call: str = "none"


UNKNOWN = Label("unknown", "unknown", 0.0, "no-match")

# A label at or above this confidence decides the flow at once; below it, it is kept as a
# tentative answer used when the flow is decided by packet count or flush.
DECIDE = 0.5


class _GiveUp:
    __slots__ = ()

    def __repr__(self) -> str:
        return "GIVE_UP"


GIVE_UP: Any = _GiveUp()


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The payload first bytes a module can recognise on one L4, and what its ``match()``
    answers for any other first byte (a *miss*), so that the engine can answer for it
    without calling it: ``None`` (wait) while the flow has fewer than ``patience`` payload
    packets or while its state holds a true value under one of ``waits_on`` (keys a module
    sets when it saw something and keeps watching), else ``GIVE_UP``.  A miss must leave the
    flow's state alone.  tests/unit/classify/test_prefilters.py checks each declaration
    against its ``match()``."""

    first: frozenset[int]
    patience: int = 1
    waits_on: tuple[str, ...] = ()


def first_bytes(*starts: bytes | int | range) -> frozenset[int]:
    """The first bytes of the given prefixes (bytes), byte values (int) and ranges."""
    out: set[int] = set()
    for s in starts:
        if isinstance(s, bytes):
            out.add(s[0])
        elif isinstance(s, int):
            out.add(s)
        else:
            out.update(s)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Spec:
    """Registration metadata of a module."""

    name: str
    l4: frozenset[str]
    needs_payload: bool = True
    max_packets: int = 8  # payload packets of a flow this module may look at
    priority: int = 50
    prefilter: dict[str, Prefilter] = field(default_factory=dict)  # by L4; absent: any payload


@dataclass(slots=True)
class Sample:
    """One packet of a flow as a module sees it; ``dir`` 0 is client to server."""

    dir: int
    payload: bytes
    ts: float
    wire_len: int
    tcp_flags: int = 0


@dataclass(slots=True)
class Flow:
    """A tracked flow: its key (client first), the samples so far and per-module scratch."""

    key: FlowKey
    first_ts: float
    last_ts: float
    samples: list[Sample] = field(default_factory=list)
    npayload: int = 0  # samples with payload
    used: int = 0  # packets of the budget used: samples, and bare TCP segments not sent
    label: Label | None = None
    tentative: Label | None = None
    given_up: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)
    proto: int = 0  # IP protocol number
    learner: Any = None  # callable(flow, sample, ctx) fed later packets of a decided flow

    @property
    def l4(self) -> str:
        return self.key.l4

    @property
    def cport(self) -> int:
        return self.key.sport

    @property
    def sport(self) -> int:
        """The server's (responder's) port."""
        return self.key.dport

    def ports(self) -> tuple[int, int]:
        """The ports that may name the flow's service (see service_ports)."""
        return service_ports(self.key.sport, self.key.dport)

    def has_port(self, *ports: int) -> bool:
        """Whether the service is on one of ``ports`` (the client's own port does not count
        unless it may be the service's, see service_ports)."""
        a, b = self.ports()
        return a in ports or b in ports

    def payloads(self, direction: int | None = None) -> list[bytes]:
        return [s.payload for s in self.samples
                if s.payload and (direction is None or s.dir == direction)]

    def stream(self, direction: int, limit: int = 8192) -> bytes:
        """The payload bytes of one direction concatenated in arrival order (no reordering; a
        segment equal to the one before it is taken for a retransmission and skipped)."""
        out = b""
        prev = None
        for s in self.samples:
            if s.dir == direction and s.payload:
                if s.payload == prev:
                    continue
                prev = s.payload
                out += s.payload
                if len(out) >= limit:
                    break
        return out

    @property
    def last(self) -> Sample:
        return self.samples[-1]


EPHEMERAL_MIN = 32768  # where Linux starts dynamic ports (IANA and Windows: 49152)


def service_ports(cport: int, sport: int) -> tuple[int, int]:
    """The ports that may name the service of a flow from port ``cport`` (the initiator's) to
    ``sport``: the responder's; the initiator's too only when it is a well-known port or when
    the responder's looks dynamic and the initiator's does not (the first packet seen may be a
    reply). A client's own port is otherwise any number its OS or a NAT picked: matching on it
    would call a web flow from port 11211 memcached."""
    if cport < 1024 or (sport >= EPHEMERAL_MIN > cport):
        return sport, cport
    return sport, sport


def app_label(app: str, reason: str, confidence: float, *, l4: str = "tcp",
              carrier: bool = False, call: str = "none") -> Label:
    """A label for ``app`` with its category from the taxonomy.

    ``carrier`` means the app was recognised inside a web carrier (TLS, HTTP, QUIC, DTLS): its
    plain/TCP category applies even on UDP.
    """
    plain_udp = l4 == "udp" and not carrier
    return Label(app, category_of(app, plain_udp=plain_udp), confidence, reason, call)


def voip_label(app: str, reason: str, confidence: float, call: str = "none") -> Label:
    """A call-traffic label: the category is voip whatever the app's usual category."""
    return Label(app, "voip", confidence, reason, call)


class PortRows:
    """Rows of a signature table (``(app, l4, ports or None, check, confidence)`` per L4)
    that a flow's ports can match, in table order: the rows without a port set plus the
    rows naming one of the two ports. Computed once per port pair, not per packet."""

    def __init__(self, by_l4: dict[str, list[tuple]]) -> None:
        self._any: dict[str, list[tuple[int, tuple]]] = {}
        self._by_port: dict[tuple[str, int], list[tuple[int, tuple]]] = {}
        for l4, rows in by_l4.items():
            self._any.setdefault(l4, [])
            for i, row in enumerate(rows):
                if row[2] is None:
                    self._any[l4].append((i, row))
                else:
                    for port in row[2]:
                        self._by_port.setdefault((l4, port), []).append((i, row))
        self._cache: dict[tuple[str, int, int], tuple] = {}

    def rows(self, l4: str, ports: tuple[int, int]) -> tuple:
        # cached by the ports that name rows: a client's random port adds no entry
        pa, pb = ports
        a = self._by_port.get((l4, pa), ())
        b = self._by_port.get((l4, pb), ()) if pb != pa else ()
        k = (l4, pa if a else -1, pb if b else -1)
        rows = self._cache.get(k)
        if rows is None:
            anyp = self._any.get(l4, [])
            rows = tuple(r for _, r in sorted(dict((*anyp, *a, *b)).items()))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[k] = rows
        return rows

    def first(self, l4: str, ports: tuple[int, int], payload: bytes) -> tuple[str, float] | None:
        """(app, confidence) of the first row whose check accepts the payload."""
        for app, _l4, _pset, check, conf in self.rows(l4, ports):
            try:
                ok = check(payload)
            except (IndexError, struct.error):
                ok = False
            if ok:
                return app, conf
        return None
