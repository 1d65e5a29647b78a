"""MGCP (RFC 3435) and Megaco/H.248 text encoding: command verbs with a transaction id and the
protocol version on the first line, or a numeric response."""

from __future__ import annotations

import re

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label


MGCP_VERBS = (b"AUEP", b"AUCX", b"CRCX", b"DLCX", b"EPCF", b"MDCX", b"NTFY", b"RQNT", b"RSIP",
              b"MESG")
MGCP_COMMAND = re.compile(rb"^(" + b"|".join(MGCP_VERBS) + rb") \d{1,9} \S+ MGCP 1\.0")
MGCP_RESPONSE = re.compile(rb"^[0-9]{3} \d{1,9}( |\r?\n|$)")
MEGACO_TEXT = re.compile(rb"^(MEGACO|!)/[0-9] ", re.I)
MEGACO_PORTS = (2944, 2945)
# MGCP verbs, MEGACO/! text (any case), binary MEGACO (0x30), response codes (digits)
_FIRST = first_bytes(*MGCP_VERBS, b"M", b"m", b"!", range(0x30, 0x3A))
SPEC = Spec("mgcp", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=3, priority=44,
            prefilter=dict.fromkeys(("udp", "tcp"), Prefilter(_FIRST, patience=2)))


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if MGCP_COMMAND.match(pl):
        return voip_label("mgcp", "mgcp-command", 0.9)
    if MEGACO_TEXT.match(pl):
        return voip_label("megaco", "megaco-text", 0.9)
    if flow.has_port(*MEGACO_PORTS) and len(pl) > 8 and pl[0] == 0x30:
        return voip_label("megaco", "megaco-binary", 0.6)
    if flow.has_port(2427, 2727) and MGCP_RESPONSE.match(pl):
        return voip_label("mgcp", "mgcp-response", 0.7)
    return GIVE_UP if flow.npayload >= 2 else None
