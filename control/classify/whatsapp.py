"""WhatsApp's own TCP protocol (Noise pipes): the client opens with ``WA`` + two version bytes,
or with the ``ED`` edge-routing prelude; chat, so category ``chat``."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes


EDGE_PRELUDE = b"ED\x00\x01"
SPEC = Spec("whatsapp", frozenset({"tcp"}), needs_payload=True, max_packets=2, priority=31,
            prefilter={"tcp": Prefilter(first_bytes(b"WA", EDGE_PRELUDE))})


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.last.dir != 0:
        return GIVE_UP
    if len(pl) >= 4 and pl[:2] == b"WA" and pl[2] <= 9 and pl[3] <= 9:
        return app_label("whatsapp", "whatsapp-noise-prelude", 0.85)
    if pl.startswith(EDGE_PRELUDE):
        return app_label("whatsapp", "whatsapp-edge-prelude", 0.85)
    return GIVE_UP
