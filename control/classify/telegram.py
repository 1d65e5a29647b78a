"""Telegram MTProto transports over TCP: abridged (0xef), intermediate (0xeeeeeeee) and padded
intermediate (0xdddddddd) openings; UDP towards Telegram's ranges is its call reflectors."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes


OPENINGS = (b"\xee\xee\xee\xee", b"\xdd\xdd\xdd\xdd")
SPEC = Spec("telegram", frozenset({"tcp"}), needs_payload=True, max_packets=2, priority=48,
            prefilter={"tcp": Prefilter(first_bytes(*OPENINGS, 0xEF))})


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.last.dir != 0:
        return GIVE_UP
    known = ctx.knowledge.app_for_addr(flow.key.dst)
    to_telegram = known is not None and known[0] == "telegram"
    if pl.startswith(OPENINGS) or (pl[:1] == b"\xef" and len(pl) > 8):
        # away from Telegram's ranges a first byte is no evidence: the first message's length
        # must also agree with the segment
        conf = 0.85 if to_telegram else 0.6 if _framed(pl) else 0.3
        return app_label("telegram", "mtproto-transport", conf)
    return GIVE_UP


def _framed(pl: bytes) -> bool:
    """The opening's first message length fills the segment exactly (abridged: one byte, or
    0x7f and three, counting 4-byte words; intermediate: four bytes little-endian)."""
    if pl[0] == 0xEF:
        if pl[1] < 0x7F:
            return 2 + pl[1] * 4 == len(pl)
        return 5 + int.from_bytes(pl[2:5], "little") * 4 == len(pl)
    return 8 + int.from_bytes(pl[4:8], "little") == len(pl)
