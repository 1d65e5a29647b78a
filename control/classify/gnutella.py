"""Gnutella: the TCP connection handshake (``GNUTELLA CONNECT/0.6`` / ``GNUTELLA/0.6``),
``GNUTELLA OK``, UDP datagrams in the GND fragmentation framing (``GND`` + flags), and plain
Gnutella 0.6 descriptors over UDP: a 16-byte GUID, the descriptor type (ping, pong, push,
query, query hit...), TTL, hops and a little-endian payload length that must equal the rest
of the datagram."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Spec, app_label

SPEC = Spec("gnutella", frozenset({"tcp", "udp"}), needs_payload=True, max_packets=3,
            priority=33)

TCP_STARTS = (b"GNUTELLA CONNECT/", b"GNUTELLA/0.", b"GNUTELLA OK", b"GIV ")
UDP_GND = b"GND"
# descriptor types: bye, route-table update, vendor message, push, DHT RPC, query, query hit.
# A bare ping/pong (0x00/0x01) is too short and generic to name the flow by itself.
DESCRIPTORS = frozenset({0x02, 0x30, 0x31, 0x40, 0x44, 0x80, 0x81})
HEADER = 23


def is_descriptor(pl: bytes) -> bool:
    """A whole Gnutella descriptor: header fields plausible, payload length exact."""
    if len(pl) < HEADER or pl[16] not in DESCRIPTORS:
        return False
    ttl, hops = pl[17], pl[18]
    if ttl + hops > 16:
        return False
    return int.from_bytes(pl[19:23], "little") == len(pl) - HEADER


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.l4 == "tcp":
        if pl.startswith(TCP_STARTS):
            return app_label("gnutella", "gnutella-handshake", 0.95)
        if pl.startswith(b"GET /uri-res/") or b"\r\nX-Gnutella-" in pl[:1024]:
            return app_label("gnutella", "gnutella-http", 0.85)
        return GIVE_UP if flow.npayload >= 2 else None
    if pl.startswith(UDP_GND) and len(pl) >= 8 and pl[3] & 0xF0 in (0, 0x10):
        return app_label("gnutella", "gnutella-gnd", 0.85, l4="udp")
    if is_descriptor(pl):
        return app_label("gnutella", "gnutella-descriptor", 0.8, l4="udp")
    return GIVE_UP
