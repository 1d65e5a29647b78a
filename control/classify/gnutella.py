"""Gnutella: the TCP connection handshake (``GNUTELLA CONNECT/0.6`` / ``GNUTELLA/0.6``),
``GNUTELLA OK``, and UDP datagrams in the GND fragmentation framing (``GND`` + flags)."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Spec, app_label

SPEC = Spec("gnutella", frozenset({"tcp", "udp"}), needs_payload=True, max_packets=3,
            priority=33)

TCP_STARTS = (b"GNUTELLA CONNECT/", b"GNUTELLA/0.", b"GNUTELLA OK", b"GIV ")
UDP_GND = b"GND"


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
    return GIVE_UP
