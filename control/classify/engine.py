"""The flow classifier: tracks flows, runs the per-application modules, decides labels.

The same :class:`Classifier` serves the offline ``classify`` command and the live controller
(which builds :class:`~.packet.Packet` objects from ring-buffer samples).  It is pure: no I/O,
no clocks; time comes from the packets and from :meth:`Classifier.expire`.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass

from . import dispatch
from .base import DECIDE, GIVE_UP, UNKNOWN, Flow, Label, Sample, Spec, app_label, voip_label
from .hosts import HostKnowledge
from .packet import FlowKey, Packet, canonical, parse_ip

__all__ = ["Classifier", "Expectation", "HostKnowledge", "Label", "MODULES"]

# The registry: modules in the order they are imported; each has SPEC and match().
MODULES: tuple[str, ...] = (
    "dns", "sip", "stun", "rtp", "dtls", "iax2", "h323", "mgcp", "teamspeak", "mumble",
    "bittorrent", "gnutella", "http", "tls", "quic", "whatsapp", "zoom", "discord",
    "telegram", "wireguard", "openvpn", "netproto", "skinny", "qq", "appsigs", "viber",
)

# what a module may raise on a malformed or truncated payload (caught, never fatal)
MALFORMED = (IndexError, ValueError, KeyError, UnicodeError, OverflowError, struct.error)

IDLE_TIMEOUT = {"tcp": 300.0, "udp": 120.0}
DEFAULT_IDLE = 60.0
EXPECT_TTL = 120.0
CALL_ENDPOINT_TTL = 300.0  # a socket seen doing ICE/STUN or call media stays a call leg this long
WHEEL_S = 5.0  # width of an expiry time bucket
# buckets in the ring of flow deadlines: the longest idle timeout, and one to grow into
WHEEL_RING = int(max(*IDLE_TIMEOUT.values(), DEFAULT_IDLE) // WHEEL_S) + 2

# A flow the engine will not look at again is kept as a flat tuple (no Flow object, nothing the
# cyclic GC has to traverse): (last_ts, app, category, confidence, reason, call).  A decided
# flow whose module still learns from its later packets (SIP dialogs, DNS answers) is kept the
# same way with more fields: (..., learner name, packets it may still learn from, then the flow
# key's fields l4, src, sport, dst, dport, tunnel).
_REC_TS = 0
_REC_LABEL = slice(1, 6)
_REC_LEARNER = 6


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


class _Table(dict):
    """A dict the cyclic GC always tracks. The collector stops tracking a plain dict whose
    keys and values are all atoms (flat tuples, strings, numbers) and tracks it again, as a
    young object, at the next insert: a table of a million decided flows would then be
    traversed whole by the next young collections and by every full one. This one stays
    tracked, so the sampler's ``gc.freeze()`` at start takes it (and its ring of wheel
    buckets) out of every collection for good; what it holds needs no collector (the
    entries are atoms and die by reference counting)."""

    __slots__ = ()


class _Bucket(list):
    """A list of flow keys due in one time bucket (tracked and frozen like a _Table)."""

    __slots__ = ()


class _Wheel:
    """Flow keys by the time bucket of their deadline, in a ring of WHEEL_RING lists made
    once (so the GC freeze at start covers them). ``next`` is the first bucket not yet
    expired; deadlines are kept between it and the ring's end."""

    __slots__ = ("lists", "next")

    def __init__(self) -> None:
        self.lists = [_Bucket() for _ in range(WHEEL_RING)]
        self.next: int | None = None

    def add(self, bucket: int, key: tuple) -> None:
        nxt = self.next
        if nxt is not None:
            bucket = min(max(bucket, nxt), nxt + WHEEL_RING - 1)
        self.lists[bucket % WHEEL_RING].append(key)

    def __len__(self) -> int:
        return sum(map(len, self.lists))


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
_DISPATCH: dict[str, tuple] | None = None


def registry() -> dict[str, list[_Mod]]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load_modules()
    return _REGISTRY


def dispatch_tables() -> dict[str, tuple]:
    """Per L4, (entries for payload-less packets, entries by payload first byte)."""
    global _DISPATCH
    if _DISPATCH is None:
        _DISPATCH = {l4: dispatch.table([(m.spec, m.match, m.learn) for m in mods], l4)
                     for l4, mods in registry().items()}
    return _DISPATCH


def _sample(key: FlowKey, p, pkt: Packet) -> Sample:
    """A parsed packet of the flow `key` as a module sees it (dir 0: from the client)."""
    direction = 0 if (p.sport == key.sport and p.src == key.src) else 1
    return Sample(direction, p.payload, pkt.ts, pkt.wire_len, p.tcp_flags)


class Classifier:
    """Labels flows from their first ``max_packets`` packets."""

    def __init__(self, max_packets: int = 8, knowledge: HostKnowledge | None = None) -> None:
        self.max_packets = max_packets
        self.knowledge = knowledge if knowledge is not None else HostKnowledge()
        self.new_expectations: list[Expectation] = []
        self.opened = False  # the last feed() opened a flow (its first sample)
        # the last feed() was a sample of a flow decided before: its label (the data path
        # samples a labelled flow only while the label waits in the mailbox, or when the flow
        # table evicted the entry and made it anew, label lost)
        self.decided_before: Label | None = None
        # (l4, addr, port) -> (app, category, call, expires): flat, untracked by the GC
        self._expect: dict[tuple[str, str, int], tuple] = _Table()
        self._flows: dict[tuple, Flow] = _Table()  # flows still being classified
        self._done: dict[tuple, tuple] = _Table()  # decided flows: canon key -> flat record
        self._mods = registry()
        self._dispatch = dispatch_tables()
        self._learners = {m.spec.name: m.learn for mods in self._mods.values() for m in mods
                          if m.learn is not None}
        self._learner_names = {fn: name for name, fn in self._learners.items()}
        # expiry: keys by time bucket (deadline // WHEEL_S) to look at then
        self._flow_wheel = _Wheel()
        self._expect_wheel: dict[int, list] = {}
        # endpoints (l4, addr, port) seen doing ICE/STUN or call media: later flows from the
        # same socket are call legs too.  Values are (app, category, call, until).
        self.call_endpoints: dict[tuple[str, str, int], tuple] = _Table()
        self.sip_calls: dict[str, str] = {}  # SIP Call-ID -> call kind

    # -- expectations ------------------------------------------------------------------
    def expect(self, exp: Expectation) -> None:
        """Register a flow announced by signalling (and queue it for the data path)."""
        k = (exp.l4, exp.addr, exp.port)
        old = self._expect.get(k)
        self._expect[k] = (exp.app, exp.category, exp.call, exp.expires)
        if old is None or int(old[3] // WHEEL_S) != int(exp.expires // WHEEL_S):
            self._expect_wheel.setdefault(int(exp.expires // WHEEL_S), []).append(k)
        self.new_expectations.append(exp)

    def remember_call_endpoint(self, l4: str, addr: str, port: int, label: Label,
                               ts: float) -> None:
        """Later flows from or to ``addr:port`` (a socket seen doing ICE/STUN or call media)
        are legs of the same call until CALL_ENDPOINT_TTL after ``ts``."""
        if len(self.call_endpoints) > 100_000:
            self.call_endpoints.clear()
        self.call_endpoints[(l4, addr, port)] = (label.app, label.category, label.call,
                                                 ts + CALL_ENDPOINT_TTL)

    def _expected(self, l4: str, src: str, sport: int, dst: str, dport: int,
                  ts: float) -> Label | None:
        expect = self._expect
        if expect:
            for ep in ((l4, dst, dport), (l4, src, sport)):
                exp = expect.get(ep)
                if exp is not None and exp[3] >= ts:
                    return Label(exp[0], exp[1], 0.9, "sdp-expected", exp[2])
        eps = self.call_endpoints
        if eps:
            for ep in ((l4, src, sport), (l4, dst, dport)):
                lab = eps.get(ep)
                if lab is not None and lab[3] >= ts:
                    return Label(lab[0], lab[1], 0.7, "ice-endpoint", lab[2])
        return None

    # -- main entry points ---------------------------------------------------------------
    def feed(self, pkt: Packet) -> Label | None:
        """Account one packet; return its flow's label the first time it is decided."""
        self.opened = False
        self.decided_before = None
        p = parse_ip(pkt.data)
        if p is None:
            return None
        if p.later_fragment:
            return None  # no ports: nothing to classify (offline counts it to its flow)
        tunnel = pkt.tunnel
        ts = pkt.ts
        l4 = p.l4
        canon = canonical(l4, p.src, p.sport, p.dst, p.dport, tunnel)
        f = self._flows.get(canon)
        if f is None:
            done = self._done
            rec = done.get(canon)
            if rec is not None:  # decided: learn from it if its module wants, else keep it alive
                self.decided_before = Label(*rec[_REC_LABEL])
                if len(rec) > _REC_LEARNER:
                    self._learn(canon, rec, p, pkt)
                else:
                    done[canon] = (ts,) + rec[1:]
                return None
            key = FlowKey(l4, p.src, p.sport, p.dst, p.dport, tunnel)
            if pkt.dir == 1:  # first seen in a reply (the initiator's packets were bare TCP)
                key = key.reversed()
            f = Flow(key=key, first_ts=ts, last_ts=ts, proto=p.proto)
            self.opened = True
            self._flows[canon] = f
            self._flow_wheel.add(int((ts + IDLE_TIMEOUT.get(l4, DEFAULT_IDLE)) // WHEEL_S), canon)
            if l4 == "tcp" or l4 == "udp":
                lab = self._expected(l4, p.src, p.sport, p.dst, p.dport, ts)
                if lab is not None:
                    return self._decide(f, lab, canon)
        elif f.label is not None:  # decided by flush(): nothing more to do
            return None
        f.last_ts = ts
        f.used = max(f.used + 1, pkt.seq + 1)
        payload = p.payload
        sample = _sample(f.key, p, pkt)
        f.samples.append(sample)
        bare, by_byte = self._dispatch[l4]
        if payload:
            f.npayload += 1
            entries = by_byte[payload[0]]
        else:
            entries = bare
        npayload = f.npayload
        given_up = f.given_up
        for name, max_pk, match, learn, patience, waits_on in entries:
            if npayload > max_pk or name in given_up:
                continue
            if match is None:  # its prefilter says: not this module's first byte
                if npayload < patience:
                    continue
                state = f.state
                for k in waits_on:
                    if state.get(k):
                        break
                else:
                    self._give_up(f, name)
                continue
            try:
                r = match(f, self)
            except MALFORMED:
                r = GIVE_UP  # a malformed payload must not stop the flow's classification
            if r is None:
                continue
            if r is GIVE_UP:
                self._give_up(f, name)
                continue
            if r.confidence >= DECIDE:
                if learn is not None:
                    f.learner = learn
                    try:
                        learn(f, sample, self)
                    except MALFORMED:
                        pass  # what it cannot read, it does not learn
                return self._decide(f, r, canon)
            if f.tentative is None or r.confidence >= f.tentative.confidence:
                f.tentative = r
                f.state["_tentative_by"] = name
        if f.used >= self.max_packets:
            return self._decide(f, self._fallback(f), canon)
        return None

    @staticmethod
    def _give_up(f: Flow, name: str) -> None:
        f.given_up.add(name)
        if f.tentative is not None and f.state.get("_tentative_by") == name:
            f.tentative = None  # its author took it back

    def _learn(self, canon: tuple, rec: tuple, p, pkt: Packet) -> None:
        """A later packet of a decided flow whose module learns from it (see _retire)."""
        ts = pkt.ts
        name, left = rec[_REC_LEARNER], rec[_REC_LEARNER + 1]
        kf = rec[_REC_LEARNER + 2:]
        key = FlowKey(*kf)
        f = Flow(key=key, first_ts=ts, last_ts=ts, proto=p.proto, label=Label(*rec[_REC_LABEL]))
        try:
            self._learners[name](f, _sample(key, p, pkt), self)
        except MALFORMED:
            pass  # what it cannot read, it does not learn
        left -= 1
        self._done[canon] = (ts,) + rec[_REC_LABEL] + ((name, left) + kf if left > 0 else ())

    def flush(self) -> list[tuple[FlowKey, Label]]:
        """Decide every still-open flow (end of capture or idle); return the new labels."""
        out = []
        for f in self._flows.values():
            if f.label is None:
                out.append((f.key, self._decide(f, self._fallback(f))))
        return out

    def expire(self, now: float, budget: int | None = None) -> bool:
        """Forget idle flows and expired expectations; True if the budget ran out (due work
        may be left for the next call).

        Flows and expectations sit in time buckets by their deadline; only the buckets that
        are due are looked at (a flow seen since is put back in the bucket of its new
        deadline), so the cost follows what expires, not how much is tracked. With a
        `budget`, at most that many flows are looked at: the rest of a due bucket waits for
        the next call, so a live caller never stalls on a large bucket.
        """
        hi = int(now // WHEEL_S)
        wheel = self._flow_wheel
        flows, done = self._flows, self._done
        left = budget
        start = hi - WHEEL_RING + 1 if wheel.next is None else max(wheel.next, hi - WHEEL_RING + 1)
        wheel.next = hi + 1
        for bucket in range(start, hi + 1):
            lst = wheel.lists[bucket % WHEEL_RING]
            n = len(lst)
            if left is not None:
                if left < n:
                    n = left
                    wheel.next = bucket  # the rest of this bucket waits for the next call
                left -= n
            keys = lst[:n]
            del lst[:n]
            for k in keys:
                f = flows.get(k)
                if f is not None:
                    last = f.last_ts
                else:
                    rec = done.get(k)
                    if rec is None:
                        continue
                    last = rec[_REC_TS]
                idle = IDLE_TIMEOUT.get(k[0], DEFAULT_IDLE)
                if now - last > idle:
                    if f is not None:
                        del flows[k]
                    else:
                        del done[k]
                else:
                    wheel.add(int((last + idle) // WHEEL_S), k)
            if wheel.next == bucket:
                break
        ewheel = self._expect_wheel
        expect = self._expect
        for bucket in [b for b in ewheel if b <= hi]:
            for k in ewheel.pop(bucket):
                e = expect.get(k)
                if e is None:
                    continue
                if e[3] < now:
                    del expect[k]
                elif int(e[3] // WHEEL_S) <= hi:
                    ewheel.setdefault(int(e[3] // WHEEL_S), []).append(k)
                # else: renewed; its new bucket already holds the key
        return left == 0

    def label_of(self, key: FlowKey) -> Label | None:
        """The decided label of a tracked flow, if any."""
        k = _canon(key)
        f = self._flows.get(k)
        if f is not None:
            return f.label
        rec = self._done.get(k)
        return Label(*rec[_REC_LABEL]) if rec is not None else None

    def tracked(self) -> tuple[int, int]:
        """(flows still being classified, as Flow objects; decided flows, as flat records)."""
        return len(self._flows), len(self._done)

    # -- internals ----------------------------------------------------------------------
    def _decide(self, f: Flow, lab: Label, canon: tuple | None = None) -> Label:
        f.label = lab
        if canon is not None:
            self._retire(f, canon)
        else:
            f.samples = []  # nothing more to look at
        return lab

    def _retire(self, f: Flow, canon: tuple) -> None:
        """A decided flow: keep only a flat record of it (with, if its module learns from later
        packets, the learner's name, how many packets it may still see and the key)."""
        lab = f.label
        if self._flows.pop(canon, None) is None:
            return
        rec = (f.last_ts, lab.app, lab.category, lab.confidence, lab.reason, lab.call)
        left = self.max_packets - f.used
        if f.learner is not None and left > 0:
            k = f.key
            rec += (self._learner_names[f.learner], left, k.l4, k.src, k.sport, k.dst, k.dport,
                    k.tunnel)
        self._done[canon] = rec

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
    return canonical(key.l4, key.src, key.sport, key.dst, key.dport, key.tunnel)
