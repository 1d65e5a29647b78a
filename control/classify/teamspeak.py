"""TeamSpeak 3 (UDP: the ``TS3INIT1`` handshake, or the 8-byte MAC + packet id + client id
header on its default ports) and TeamSpeak 2 (``f4 be 0x`` prefix)."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label

TS3_INIT = b"TS3INIT1"
TS2_PREFIXES = (b"\xf4\xbe\x01", b"\xf4\xbe\x02", b"\xf4\xbe\x03")
VOICE_PORTS = (9987, 8767)
TCP_PORTS = (10011, 30033, 14534, 51234)
SPEC = Spec("teamspeak", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=3,
            priority=46, prefilter={"tcp": Prefilter(first_bytes(TS3_INIT, *TS2_PREFIXES), 2)})


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if pl.startswith(TS3_INIT):
        return voip_label("teamspeak", "ts3-init", 0.95)
    if pl.startswith(TS2_PREFIXES):
        return voip_label("teamspeak", "ts2-header", 0.85)
    if flow.l4 == "udp" and flow.has_port(*VOICE_PORTS) and _ts3_header(pl, flow.last.dir):
        return voip_label("teamspeak", "ts3-port-header", 0.6)
    if flow.l4 == "tcp" and flow.has_port(*TCP_PORTS) and pl.startswith(b"TS3"):
        return voip_label("teamspeak", "ts3-query", 0.8)
    return GIVE_UP if flow.npayload >= 2 else None


def _ts3_header(pl: bytes, direction: int) -> bool:
    """A TeamSpeak 3 voice header: an 8-byte MAC, the packet id, the client id (towards the
    server only), then a type byte whose low nibble is one of the nine packet types."""
    at = 12 if direction == 0 else 10
    return len(pl) > at and pl[at] & 0x0F <= 8
