"""Samples from the data path to the classifier, labels back into the data path.

The XDP program copies the first packets of each unlabelled flow into a ring
buffer and never waits: while a flow is unlabelled its packets follow the static
rules. Here each sample becomes a classifier Packet; when the classifier decides,
the label goes into the class mailbox keyed by the flow, and the flow's next
packet picks it up (and with it the rules that match app, category or call).
Media endpoints announced by SDP go into the expect map, so a call's RTP is
labelled, and by policy dropped, from its first packet.
"""

from __future__ import annotations

import collections
import ctypes as ct
import gc
import logging
import socket
import struct
import threading
import time
from typing import Any

from . import layout
from .classify import taxonomy
from .classify.engine import Classifier, Expectation
from .classify.packet import Packet
from .maps import MapSet, addr16

log = logging.getLogger("xdpgate.sampler")

TUN_NAME = {1: "gtpu", 2: "gre", 3: "vxlan", 4: "ipip"}
L4_PROTO = {"tcp": 6, "udp": 17}
KEEP_SAMPLING_APPS = {"sip"}  # signalling whose later messages (SDP answers) matter
GC_GEN0_THRESHOLD = 5000  # young collections of ~1 ms (50,000 gave 5-12 ms pauses: the p99)
EXPIRE_EVERY_S = 0.05  # the classifier forgets idle flows this often,
EXPIRE_BUDGET = 2000  # looking at no more than this many each time (no long stall)
MAILBOX_BATCH = 256  # labels written with one BPF_MAP_UPDATE_BATCH (and at least per poll)
# A poll consumes the ring buffer until it finds it empty: under load that is long, so a queued
# label is also written once it has waited this long (checked after each sample).
MAILBOX_MAX_WAIT_NS = 1_000_000

# where the fields the sampler needs sit in a ring-buffer record (a SampleHdr, then the data)
_HDR_SIZE = ct.sizeof(layout.SampleHdr)
_KEY_OFF = layout.SampleHdr.key.offset
_KEY_SIZE = ct.sizeof(layout.FlowKey)
_TUN_TYPE_OFF = _KEY_OFF + layout.FlowKey.tun_type.offset
_TUN_ID = struct.Struct("=I")
_TUN_ID_OFF = _KEY_OFF + layout.FlowKey.tun_id.offset
_TS = struct.Struct("=Q")
_TS_OFF = layout.SampleHdr.ts_ns.offset
_WIRE = struct.Struct("=I")
_WIRE_OFF = layout.SampleHdr.wire_len.offset
_CAP = struct.Struct("=H")
_CAP_OFF = layout.SampleHdr.cap_len.offset
_SEQ_OFF = layout.SampleHdr.seq.offset
_DIR_OFF = layout.SampleHdr.dir.offset


def mono_ns() -> int:
    """The clock of bpf_ktime_get_ns()."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class LabelSink:
    """Writes labels and expectations into the maps; counts them.

    Labels are queued and written with one batched map update per ring-buffer poll, every
    ``MAILBOX_BATCH`` labels, or once the oldest has waited ``MAILBOX_MAX_WAIT_NS``
    (:meth:`flush_due`): :meth:`flush` writes them; latency is taken at the write.
    """

    def __init__(self, maps: MapSet) -> None:
        self.maps = maps
        self.flows_by_app: collections.Counter[str] = collections.Counter()
        self.flows_by_cat: collections.Counter[str] = collections.Counter()
        self.latencies_ns: collections.deque[int] = collections.deque(maxlen=100_000)
        self.errors = 0
        self._cls: dict[tuple, bytes] = {}  # (app, category, call, confidence) -> packed Class
        self._keys: list[bytes] = []
        self._vals: list[bytes] = []
        self._first: list[int] = []
        self._queued_ns = 0  # when the oldest queued label was queued
        self._batch_ok = True
        # what expect_live holds (kept from an adopted filter): no expectation lives past it
        live = maps["expect_live"].get(ct.c_uint32(0))
        self._expect_live_ns = int(live.value) if live is not None else 0

    def class_bytes(self, app: str, category: str, call: str, confidence: float) -> bytes:
        """The packed layout.Class of a label (cached: labels repeat)."""
        k = (app, category, call, confidence)
        b = self._cls.get(k)
        if b is None:
            cls = layout.Class(app=taxonomy.app_id(app), category=taxonomy.category_id(category),
                               call=taxonomy.CALL_KINDS.index(call) if call in
                               taxonomy.CALL_KINDS else 0,
                               override=layout.Action.NONE, confidence=int(confidence * 100),
                               flags=layout.CF_KEEP_SAMPLING if app in KEEP_SAMPLING_APPS else 0)
            b = bytes(cls)
            if len(self._cls) > 65536:
                self._cls.clear()
            self._cls[k] = b
        return b

    def label(self, key: layout.FlowKey | bytes, lab: Any, first_ts_ns: int | None = None,
              count: bool = True) -> None:
        """Queue ``lab`` for the flow ``key`` (a layout.FlowKey or its bytes); ``count``: a
        flow labelled for the first time (not a label sent again)."""
        if not self._keys:
            self._queued_ns = mono_ns()
        self._keys.append(key if isinstance(key, bytes) else bytes(key))
        self._vals.append(self.class_bytes(lab.app, lab.category, lab.call, lab.confidence))
        self._first.append(first_ts_ns or 0)
        if count:
            self.flows_by_app[lab.app] += 1
            self.flows_by_cat[lab.category] += 1
        if len(self._keys) >= MAILBOX_BATCH:
            self.flush()

    def flush_due(self) -> None:
        """Write the queued labels if the oldest has waited long enough."""
        if self._keys and mono_ns() - self._queued_ns >= MAILBOX_MAX_WAIT_NS:
            self.flush()

    def flush(self) -> None:
        """Write the queued labels into the mailbox."""
        keys = self._keys
        if not keys:
            return
        vals, first = self._vals, self._first
        self._keys, self._vals, self._first = [], [], []
        mb = self.maps["mailbox"]
        written = False
        if self._batch_ok and len(keys) > 1:
            try:
                mb.set_many_raw(b"".join(keys), b"".join(vals), len(keys))
                written = True
            except OSError as e:  # no batch ops on this kernel: one by one from now on
                log.debug("mailbox batch update failed (%s): writing one by one", e)
                self._batch_ok = False
        if not written:
            kt, vt = layout.FlowKey, layout.Class
            for k, v in zip(keys, vals):
                try:
                    mb.set(kt.from_buffer_copy(k), vt.from_buffer_copy(v))
                except OSError:
                    self.errors += 1
        now = mono_ns()
        lat = self.latencies_ns
        for t in first:
            if t:
                lat.append(now - t)

    def expect(self, exp: Expectation, tun_type: int, tun_id: int, ttl_s: float) -> None:
        k = layout.ExpectKey(proto=L4_PROTO.get(exp.l4, 17), tun_type=tun_type, tun_id=tun_id,
                             port=socket.htons(exp.port))
        k.addr[:] = list(addr16(exp.addr))
        cls = layout.Class.from_buffer_copy(self.class_bytes(exp.app, exp.category, exp.call, 0.9))
        cls.flags = 0
        until = mono_ns() + int(ttl_s * 1e9)
        self.maps["expect"].set(k, layout.Expect(expires_ns=until, cls=cls))
        if until > self._expect_live_ns:  # after the entry: the data path looks from now on
            self.maps["expect_live"].set(ct.c_uint32(0), ct.c_uint64(until))
            self._expect_live_ns = until


class Sampler:
    """Consumes the ring buffer in a thread; feeds one Classifier."""

    def __init__(self, bpf: Any, maps: MapSet, *, max_packets: int = 8,
                 classifier: Classifier | None = None) -> None:
        self.bpf = bpf
        self.maps = maps
        self.classifier = classifier or Classifier(max_packets=max_packets)
        self.sink = LabelSink(maps)
        self.samples = 0
        self._first_ts: dict[bytes, int] = {}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_expire = time.monotonic()

    # one sample -------------------------------------------------------------
    def handle(self, hdr: layout.SampleHdr, data: bytes) -> None:
        k = hdr.key
        self._handle(bytes(k), hdr.ts_ns, hdr.seq, hdr.dir, hdr.wire_len, k.tun_type,
                     k.tun_id, data)

    def _handle(self, kb: bytes, ts_ns: int, seq: int, direction: int, wire_len: int,
                tun_type: int, tun_id: int, data: bytes) -> None:
        self.samples += 1
        tun = (TUN_NAME[tun_type], tun_id) if tun_type in TUN_NAME else None
        ts = ts_ns / 1e9
        clf = self.classifier
        try:
            lab = clf.feed(Packet(ts, data, wire_len, tun, seq, direction))
        except Exception:  # a classifier bug must not stop the sampler
            self.sink.errors += 1
            log.exception("classifier failed on a sample")
            return
        # latency runs from the flow's first sample (bare TCP segments before it are not sent)
        if lab is not None:
            self.sink.label(kb, lab, ts_ns if clf.opened else self._first_ts.pop(kb, None))
        elif clf.decided_before is not None and clf.decided_before.app not in KEEP_SAMPLING_APPS:
            # the label did not stick (the flow table made the entry anew): send it again
            self.sink.label(kb, clf.decided_before, count=False)
        elif clf.opened:
            first = self._first_ts
            first[kb] = ts_ns
            if len(first) > 200_000:
                first.clear()
        if clf.new_expectations:
            for exp in clf.new_expectations:
                ttl = max(1.0, exp.expires - ts)
                self.sink.expect(exp, tun_type, tun_id, ttl)
            clf.new_expectations.clear()

    def _callback(self, ctx: Any, data: int, size: int) -> int:
        if size < _HDR_SIZE:
            return 0
        buf = ct.string_at(data, size)
        n = min(_CAP.unpack_from(buf, _CAP_OFF)[0], size - _HDR_SIZE)
        self._handle(buf[_KEY_OFF:_KEY_OFF + _KEY_SIZE], _TS.unpack_from(buf, _TS_OFF)[0],
                     buf[_SEQ_OFF], buf[_DIR_OFF], _WIRE.unpack_from(buf, _WIRE_OFF)[0],
                     buf[_TUN_TYPE_OFF], _TUN_ID.unpack_from(buf, _TUN_ID_OFF)[0],
                     buf[_HDR_SIZE:_HDR_SIZE + n])
        self._flush_sink(only_due=True)
        return 0

    # the thread --------------------------------------------------------------
    def start(self) -> None:
        self.bpf[b"samples"].open_ring_buffer(self._callback)
        self._thread = threading.Thread(target=self._run, name="xdpgate-sampler", daemon=True)
        self._thread.start()

    @staticmethod
    def _tune_gc() -> None:
        """Start-up objects (modules, tables, the BPF program's objects) never die: move them
        out of the collector's reach. That includes the classifier's flow tables and wheel,
        made to stay tracked so that they are frozen here: the flat keys and records they
        come to hold are dropped by the collector at its first look, so a million decided
        flows cost no collection anything. The young generation is collected every
        GC_GEN0_THRESHOLD allocations: a collection's pause grows with that number, and it
        delays every label queued behind it."""
        gc.collect()
        gc.freeze()
        g0, g1, g2 = gc.get_threshold()
        if g0 > 0:
            gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)

    def _run(self) -> None:
        self._tune_gc()
        while not self._stop.is_set():
            if self._paused.is_set():
                self._flush_sink()
                time.sleep(0.05)
                continue
            try:
                self.bpf.ring_buffer_poll(100)
            except Exception:
                log.exception("ring buffer poll failed")
                time.sleep(0.1)
            self._flush_sink()
            now = time.monotonic()
            if now - self._last_expire > EXPIRE_EVERY_S:
                self._last_expire = now
                self.classifier.expire(mono_ns() / 1e9, budget=EXPIRE_BUDGET)

    def _flush_sink(self, only_due: bool = False) -> None:
        try:
            if only_due:
                self.sink.flush_due()
            else:
                self.sink.flush()
        except Exception:
            self.sink.errors += 1
            log.exception("writing labels to the mailbox failed")

    def pause(self) -> None:
        """Stop reading the ring buffer (tests; the data path goes on without us)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._thread is None or not self._thread.is_alive():
            self._flush_sink()

    def latency_percentiles(self) -> dict[str, float]:
        lat = sorted(self.sink.latencies_ns)
        if not lat:
            return {}
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6  # noqa: E731
        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "n": len(lat)}
