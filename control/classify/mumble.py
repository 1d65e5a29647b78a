"""Mumble: the UDP ping (4 zero bytes + 8-byte ident, answered with 24 bytes echoing it) and
its TLS control channel on 64738."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label

SPEC = Spec("mumble", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=3, priority=47,
            # UDP ping/pong start with zero bytes; over TCP, TLS (handshake record 22)
            prefilter={"udp": Prefilter(first_bytes(0)), "tcp": Prefilter(first_bytes(22))})

PORT = 64738


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.l4 == "udp":
        if len(pl) == 12 and pl[:4] == b"\x00\x00\x00\x00":
            return voip_label("mumble", "mumble-ping", 0.8 if flow.has_port(PORT) else 0.45)
        if len(pl) == 24 and pl[0] == 0 and flow.has_port(PORT):
            return voip_label("mumble", "mumble-pong", 0.7)
        return GIVE_UP
    if flow.has_port(PORT) and len(pl) > 5 and pl[0] == 22 and pl[1] == 3:
        return voip_label("mumble", "mumble-tls-port", 0.7)
    return GIVE_UP
