"""Discord voice: the 74-byte IP-discovery request/response (type, length 70, SSRC, address,
port) that opens every voice UDP flow, then RTP."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label


DISCOVERY_LEN = 74
DISCOVERY_TYPES = (1, 2)
SPEC = Spec("discord", frozenset({"udp"}), needs_payload=True, max_packets=3, priority=18,
            prefilter={"udp": Prefilter(first_bytes(0), patience=2)})  # type 1/2, big-endian


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if len(pl) == DISCOVERY_LEN:
        typ, ln = struct.unpack_from("!HH", pl, 0)
        if typ in DISCOVERY_TYPES and ln == 70:
            lab = voip_label("discord", "discord-ip-discovery", 0.9)
            ctx.remember_call_endpoint("udp", flow.key.src, flow.key.sport, lab, flow.last_ts)
            return lab
    return GIVE_UP if flow.npayload >= 2 else None
