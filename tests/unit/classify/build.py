"""Packet builders for the classifier story tests (scapy builds, the Classifier reads)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from xdpgate.control.classify.engine import Classifier
from xdpgate.control.classify.packet import Packet

CLIENT, SERVER = "10.1.0.2", "192.0.2.10"


def udp(payload: bytes, sport: int, dport: int, src: str = CLIENT, dst: str = SERVER,
        ts: float = 0.0) -> Packet:
    ip = IPv6 if ":" in src else IP
    raw = bytes(ip(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))
    return Packet(ts, raw, len(raw))


def tcp(payload: bytes, sport: int, dport: int, src: str = CLIENT, dst: str = SERVER,
        ts: float = 0.0, flags: str = "PA") -> Packet:
    raw = bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / Raw(payload))
    return Packet(ts, raw, len(raw))


def first_label(clf: Classifier, pkts):
    """Feed packets; return the first label decided (flushing at the end)."""
    for p in pkts:
        lab = clf.feed(p)
        if lab is not None:
            return lab
    out = clf.flush()
    return out[0][1] if out else None
