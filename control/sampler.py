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
import logging
import socket
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


def mono_ns() -> int:
    """The clock of bpf_ktime_get_ns()."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class LabelSink:
    """Writes labels and expectations into the maps; counts them."""

    def __init__(self, maps: MapSet) -> None:
        self.maps = maps
        self.flows_by_app: collections.Counter[str] = collections.Counter()
        self.flows_by_cat: collections.Counter[str] = collections.Counter()
        self.latencies_ns: collections.deque[int] = collections.deque(maxlen=100_000)
        self.errors = 0

    def label(self, key: layout.FlowKey, lab: Any, first_ts_ns: int | None = None) -> None:
        cls = layout.Class(app=taxonomy.app_id(lab.app), category=taxonomy.category_id(lab.category),
                           call=taxonomy.CALL_KINDS.index(lab.call) if lab.call in
                           taxonomy.CALL_KINDS else 0,
                           override=layout.Action.NONE, confidence=int(lab.confidence * 100),
                           flags=layout.CF_KEEP_SAMPLING if lab.app in KEEP_SAMPLING_APPS else 0)
        self.maps["mailbox"].set(key, cls)
        self.flows_by_app[lab.app] += 1
        self.flows_by_cat[lab.category] += 1
        if first_ts_ns:
            self.latencies_ns.append(mono_ns() - first_ts_ns)

    def expect(self, exp: Expectation, tun_type: int, tun_id: int, ttl_s: float) -> None:
        k = layout.ExpectKey(proto=L4_PROTO.get(exp.l4, 17), tun_type=tun_type, tun_id=tun_id,
                             port=socket.htons(exp.port))
        k.addr[:] = list(addr16(exp.addr))
        cls = layout.Class(app=taxonomy.app_id(exp.app), category=taxonomy.category_id(exp.category),
                           call=taxonomy.CALL_KINDS.index(exp.call) if exp.call in
                           taxonomy.CALL_KINDS else 0, override=layout.Action.NONE,
                           confidence=90)
        self.maps["expect"].set(k, layout.Expect(expires_ns=mono_ns() + int(ttl_s * 1e9), cls=cls))


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
        self.samples += 1
        kb = bytes(hdr.key)
        if hdr.seq == 0:
            self._first_ts[kb] = hdr.ts_ns
            if len(self._first_ts) > 200_000:
                self._first_ts.clear()
        tun = (TUN_NAME[hdr.key.tun_type], hdr.key.tun_id) if hdr.key.tun_type in TUN_NAME else None
        pkt = Packet(ts=hdr.ts_ns / 1e9, data=data, wire_len=hdr.wire_len, tunnel=tun)
        try:
            lab = self.classifier.feed(pkt)
        except Exception:  # a classifier bug must not stop the sampler
            self.sink.errors += 1
            log.exception("classifier failed on a sample")
            return
        if lab is not None:
            self.sink.label(layout.FlowKey.from_buffer_copy(kb), lab, self._first_ts.pop(kb, None))
        if self.classifier.new_expectations:
            for exp in self.classifier.new_expectations:
                ttl = max(1.0, exp.expires - pkt.ts)
                self.sink.expect(exp, hdr.key.tun_type, hdr.key.tun_id, ttl)
            self.classifier.new_expectations.clear()

    def _callback(self, ctx: Any, data: int, size: int) -> int:
        hsz = ct.sizeof(layout.SampleHdr)
        if size < hsz:
            return 0
        hdr = layout.SampleHdr.from_buffer_copy(ct.string_at(data, hsz))
        n = min(hdr.cap_len, size - hsz)
        self.handle(hdr, ct.string_at(data + hsz, n))
        return 0

    # the thread --------------------------------------------------------------
    def start(self) -> None:
        self.bpf[b"samples"].open_ring_buffer(self._callback)
        self._thread = threading.Thread(target=self._run, name="xdpgate-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                time.sleep(0.05)
                continue
            try:
                self.bpf.ring_buffer_poll(100)
            except Exception:
                log.exception("ring buffer poll failed")
                time.sleep(0.1)
            now = time.monotonic()
            if now - self._last_expire > 5:
                self._last_expire = now
                self.classifier.expire(mono_ns() / 1e9)

    def pause(self) -> None:
        """Stop reading the ring buffer (tests; the data path goes on without us)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def latency_percentiles(self) -> dict[str, float]:
        lat = sorted(self.sink.latencies_ns)
        if not lat:
            return {}
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6  # noqa: E731
        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "n": len(lat)}
