"""IAX2 (RFC 5456): full frames with the F bit, call numbers, sequence numbers and an IAX
control frame type; a second full frame of the same call confirms."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label


PORT = 4569
FRAME_TYPES = frozenset(range(1, 11))  # DTMF .. comfort noise; 6 = IAX control
IAX_SUBCLASSES = frozenset(range(1, 0x26))
SPEC = Spec("iax2", frozenset({"udp"}), needs_payload=True, max_packets=4, priority=45,
            prefilter={"udp": Prefilter(first_bytes(range(0x80, 0x100)), 2, ("iax",))})  # F bit


def full_frame(pl: bytes) -> tuple[int, int, int, int] | None:
    """(source call, dest call, frame type, subclass) of an IAX2 full frame."""
    if len(pl) < 12 or not pl[0] & 0x80:
        return None
    src, dst = struct.unpack_from("!HH", pl, 0)
    ftype, sub = pl[10], pl[11]
    if ftype not in FRAME_TYPES:
        return None
    if ftype == 6 and sub not in IAX_SUBCLASSES:
        return None
    if pl[8] > 64 or pl[9] > 64:  # sequence numbers start at 0 with each call
        return None
    return src & 0x7FFF, dst & 0x7FFF, ftype, sub


def match(flow: Flow, ctx) -> Label | None:
    f = full_frame(flow.last.payload)
    if f is None:
        if flow.state.get("iax"):
            return None
        return GIVE_UP if flow.npayload >= 2 else None
    prev = flow.state.get("iax")
    flow.state["iax"] = f
    on_port = flow.has_port(PORT)
    if f[2] == 6 and f[3] == 1 and f[1] == 0 and flow.last.payload[8:10] == b"\x00\x00":
        return voip_label("iax", "iax2-new", 0.85 if on_port else 0.6)
    if prev is not None and f[0] and (prev[0], prev[1]) in ((f[1], f[0]), (f[0], f[1])):
        return voip_label("iax", "iax2-call-numbers", 0.85 if on_port else 0.6)
    if on_port and f[2] == 6:
        return voip_label("iax", "iax2-control", 0.7)
    return voip_label("iax", "iax2-frame", 0.3) if on_port else None
