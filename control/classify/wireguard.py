"""WireGuard: message type in the first byte, three reserved zero bytes, fixed sizes for the
handshake initiation (148), response (92) and cookie reply (64)."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes


SIZES = {1: 148, 2: 92, 3: 64}
SPEC = Spec("wireguard", frozenset({"udp"}), needs_payload=True, max_packets=2, priority=22,
            prefilter={"udp": Prefilter(first_bytes(range(1, 5)))})  # message types 1-4


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if len(pl) >= 4 and pl[1:4] == b"\x00\x00\x00":
        if SIZES.get(pl[0]) == len(pl):
            return app_label("wireguard", f"wireguard-msg{pl[0]}", 0.9, l4="udp")
        if pl[0] == 4 and len(pl) >= 32 and len(pl) % 16 == 0:
            return app_label("wireguard", "wireguard-data", 0.4, l4="udp")
    return GIVE_UP
