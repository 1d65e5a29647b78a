"""Viber calls over UDP (its relays listen on 7985-7987 and 5242-5243, but any port is tried):
every datagram starts with a 16-bit session tag that stays the same for the flow, then a
little-endian message type; the opening message is type 1 with sub-type 5, keep-alives are
20-byte type 9 messages, relay probes 34-byte type 0x19/0x1b.  Category ``voip``."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Spec, voip_label

SPEC = Spec("viber", frozenset({"udp"}), needs_payload=True, max_packets=4, priority=47)

MAX_TYPE = 0x1F


def _typed(pl: bytes) -> bool:
    return len(pl) >= 18 and pl[3] == 0 and 1 <= pl[2] <= MAX_TYPE


def _opening(pl: bytes) -> bool:
    return ((pl[2] == 1 and pl[4:6] == b"\x05\x00") or (len(pl) == 20 and pl[2] == 9)
            or (len(pl) == 34 and pl[2] in (0x19, 0x1B)))


def match(flow: Flow, ctx) -> Label | None:
    pls = flow.payloads()
    if not all(_typed(p) for p in pls) or len({p[:2] for p in pls}) != 1:
        return GIVE_UP
    if not _opening(pls[0]):
        return GIVE_UP
    if len(pls) < 2:
        return None
    if len({s.dir for s in flow.samples if s.payload}) == 2 or any(_opening(p) for p in pls[1:]):
        return voip_label("viber", "viber-udp-session", 0.75)
    return None
