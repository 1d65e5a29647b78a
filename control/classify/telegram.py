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
        return app_label("telegram", "mtproto-transport", 0.85 if to_telegram else 0.5)
    return GIVE_UP
