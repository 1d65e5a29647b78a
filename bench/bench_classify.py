"""Offline classify throughput (packets/s) next to a port-only labeller over the same packets.

Both run in this process over the same decoded packets (file reading and link-layer decoding
are done once, outside the timed part), so the ratio is the classifier's cost per packet.
Captures: every file under ../shared/datasets/ndpi-dev/pcap if present, else a synthetic
capture generated here.  Last line: ``classify_pps=... portonly_pps=... ratio=...``.

    python bench/bench_classify.py [CAPTURE ...] [--max-packets 8] [--snaplen 1500]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

from xdpgate.control.classify.engine import Classifier
from xdpgate.control.classify.offline import SNAPLEN, _packets, decapsulate, link_to_ip
from xdpgate.control.classify.packet import Packet, parse_ip

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ndpi-dev" / "pcap"
PORT_APPS = {53: "dns", 80: "http", 443: "tls", 5060: "sip", 3478: "stun", 6881: "bittorrent"}


def synthetic_capture(path: str, flows: int = 2000) -> None:
    """A pcap of SIP, RTP, DNS and random UDP flows (raw-IP link type)."""
    import dpkt

    rnd = random.Random(1)
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW)
        t = 0.0
        for i in range(flows):
            src = bytes([10, 0, i >> 8 & 0xFF, i & 0xFF])
            dst = bytes([192, 0, 2, 1 + i % 200])
            sport, dport = 10000 + i % 50000, (5060, 53, 40000 + i % 1000, 443)[i % 4]
            for n in range(10):
                if dport == 5060:
                    pl = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: %d\r\n\r\n" % i
                elif dport == 53:
                    pl = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"
                else:
                    pl = struct.pack("!BBHII", 0x80, 0, n, n * 160, i) + bytes(160)
                udp = struct.pack("!HHHH", sport, dport, 8 + len(pl), 0) + pl
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                                 src, dst) + udp
                t += 0.001 + rnd.random() * 0.001
                w.writepkt(ip, ts=t)


def load(paths: list[str], snaplen: int) -> list[Packet]:
    pkts = []
    for path in paths:
        try:
            for ts, lt, frame in _packets(path):
                ip = link_to_ip(lt, frame)
                if ip is None:
                    continue
                ip, tun = decapsulate(ip)
                pkts.append(Packet(ts, ip[:snaplen], len(ip), tun))
        except Exception:  # noqa: BLE001 - a capture the reader rejects is left out
            continue
    return pkts


def per_flow_limit(pkts: list[Packet], max_packets: int) -> list[Packet]:
    """The packets the classifier is handed: the first ``max_packets`` of each flow."""
    seen: dict[tuple, int] = {}
    out = []
    for p in pkts:
        q = parse_ip(p.data)
        if q is None:
            continue
        k = q.canonical(p.tunnel)
        n = seen.get(k, 0)
        if n < max_packets:
            seen[k] = n + 1
            out.append(p)
    return out


def run_classifier(pkts: list[Packet], max_packets: int) -> float:
    clf = Classifier(max_packets=max_packets)
    t0 = time.perf_counter()
    for p in pkts:
        clf.feed(p)
    clf.flush()
    return time.perf_counter() - t0


def run_port_only(pkts: list[Packet]) -> float:
    labels: dict[tuple, str] = {}
    t0 = time.perf_counter()
    for p in pkts:
        q = parse_ip(p.data)
        if q is None:
            continue
        k = q.canonical(p.tunnel)
        if k not in labels:
            labels[k] = PORT_APPS.get(q.dport) or PORT_APPS.get(q.sport) or "unknown"
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="*")
    ap.add_argument("--max-packets", type=int, default=8)
    ap.add_argument("--snaplen", type=int, default=SNAPLEN)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    paths = a.captures
    tmp = None
    if not paths:
        if DATA.is_dir():
            paths = sorted(str(p) for p in DATA.iterdir())
        else:
            tmp = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False)
            tmp.close()
            synthetic_capture(tmp.name)
            paths = [tmp.name]
    pkts = per_flow_limit(load(paths, a.snaplen), a.max_packets)
    if tmp is not None:
        os.unlink(tmp.name)
    best_c = min(run_classifier(pkts, a.max_packets) for _ in range(a.repeat))
    best_p = min(run_port_only(pkts) for _ in range(a.repeat))
    n = len(pkts)
    print(f"captures={len(paths)} packets_handed={n} (first {a.max_packets} per flow, "
          f"snaplen {a.snaplen})")
    print(f"classifier: {best_c:.3f}s  port-only: {best_p:.3f}s  (best of {a.repeat})")
    c_pps, p_pps = n / best_c, n / best_p
    print(f"classify_pps={c_pps:.0f} portonly_pps={p_pps:.0f} ratio={c_pps / p_pps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
