"""Cisco Skinny (SCCP): little-endian length (of what follows the 8-byte header), a header
version word and a known message id, on TCP 2000 or confirmed by a second message."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Spec, voip_label

SPEC = Spec("skinny", frozenset({"tcp"}), needs_payload=True, max_packets=3, priority=43)

PORT = 2000
HEADER_VERSIONS = frozenset({0x00, 0x11, 0x12, 0x14, 0x15, 0x16, 0x17})
MAX_MESSAGE_ID = 0x0200


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if len(pl) < 12:
        return GIVE_UP if flow.npayload >= 2 else None
    ln, ver, mid = struct.unpack_from("<III", pl, 0)
    if ln + 8 > len(pl) + 1460 or ln < 4 or ver not in HEADER_VERSIONS or mid > MAX_MESSAGE_ID:
        return GIVE_UP
    if flow.has_port(PORT):
        return voip_label("skinny", "sccp-header", 0.85)
    flow.state["sccp"] = flow.state.get("sccp", 0) + 1
    if flow.state["sccp"] >= 2:
        return voip_label("skinny", "sccp-messages", 0.7)
    return None
