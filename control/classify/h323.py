"""H.323: Q.931 call signalling (H.225.0) in TPKT over TCP on any port, H.245 in TPKT, and
RAS over UDP 1719.  TPKT carrying X.224 connection requests is RDP, not H.323."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, first_bytes, voip_label


Q931_DISCRIMINATOR = 0x08
Q931_TYPES = frozenset({0x01, 0x02, 0x03, 0x05, 0x07, 0x0F, 0x5A, 0x62, 0x6E, 0x7B, 0x7D, 0x45,
                        0x4D, 0x46, 0x75})
X224_CR_CC = frozenset({0xE0, 0xD0})
RAS_PORT = 1719
CS_PORT = 1720
ISO_TSAP_PORT = 102
SPEC = Spec("h323", frozenset({"tcp", "udp"}), needs_payload=True, max_packets=4, priority=42,
            prefilter={"udp": Prefilter(first_bytes(range(0x80))),  # RAS: extension bit clear
                       "tcp": Prefilter(first_bytes(3), patience=2)})  # TPKT version 3


def tpkt(pl: bytes) -> int | None:
    """TPKT length if ``pl`` starts with a TPKT header (version 3)."""
    if len(pl) < 5 or pl[0] != 3 or pl[1] != 0:
        return None
    n = struct.unpack_from("!H", pl, 2)[0]
    return n if 7 <= n <= 65535 else None


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if flow.l4 == "udp":
        # PER: extension bit clear, then the 5-bit RasMessage choice (25 alternatives)
        if flow.has_port(RAS_PORT) and len(pl) >= 6 and not pl[0] & 0x80 and (pl[0] >> 2) <= 25:
            return voip_label("h323", "h225-ras", 0.6)
        return GIVE_UP
    n = tpkt(pl)
    if n is None:
        return GIVE_UP if flow.npayload >= 2 else None
    if flow.has_port(ISO_TSAP_PORT):
        return GIVE_UP
    if len(pl) >= 7 and pl[5] in X224_CR_CC:
        return app_label("rdp", "tpkt-x224", 0.85)
    if len(pl) >= 8 and pl[4] == Q931_DISCRIMINATOR:
        crl = pl[5] & 0x0F
        if crl <= 3 and len(pl) > 6 + crl and pl[6 + crl] in Q931_TYPES:
            return voip_label("h323", "q931-in-tpkt", 0.9)
    if n == len(pl) or flow.has_port(CS_PORT):
        flow.state["tpkt"] = flow.state.get("tpkt", 0) + 1
        if flow.state["tpkt"] >= 2 or flow.has_port(CS_PORT):
            return voip_label("h323", "h245-tpkt", 0.6)
        return voip_label("h323", "tpkt", 0.3)
    return GIVE_UP
