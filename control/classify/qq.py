"""Tencent QQ's OICQ protocol over UDP: a 0x02 start byte, a 2-byte client version, a 2-byte
command and a 2-byte sequence, and a 0x03 end byte."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes


START, END = 0x02, 0x03
PORTS = (8000, 4000)
SPEC = Spec("qq", frozenset({"udp"}), needs_payload=True, max_packets=2, priority=52,
          prefilter={"udp": Prefilter(first_bytes(0x02))})  # START


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if len(pl) >= 12 and pl[0] == START and pl[-1] == END and pl[3] == 0x00:
        return app_label("oicq", "oicq-frame", 0.8 if flow.has_port(*PORTS) else 0.45, l4="udp")
    return GIVE_UP
