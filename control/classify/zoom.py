"""Zoom media over UDP: the relay/SFU encapsulation (type 0x05 with a media sub-type) and the
P2P media header, confirmed by the address knowledge or a second packet."""

from __future__ import annotations

from .base import GIVE_UP, Flow, Label, Spec, voip_label

SPEC = Spec("zoom", frozenset({"udp"}), needs_payload=True, max_packets=4, priority=19)

SFU_TYPE = 0x05
MEDIA_TYPES = frozenset({0x0D, 0x0F, 0x10, 0x13, 0x15, 0x16, 0x17, 0x1E, 0x1F, 0x21, 0x22})
P2P_TYPES = frozenset({0x1F, 0x20})
ZOOM_PORTS = (8801, 8802, 8803, 8804, 8805, 8806, 8807, 8808, 8809, 8810)


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if len(pl) >= 24 and pl[0] == SFU_TYPE and pl[8] in MEDIA_TYPES:
        if flow.has_port(*ZOOM_PORTS) or _zoom_host(flow, ctx):
            return voip_label("zoom", "zoom-sfu-media", 0.85)
        flow.state["zoom"] = flow.state.get("zoom", 0) + 1
        return voip_label("zoom", "zoom-sfu-header", 0.45 if flow.state["zoom"] > 1 else 0.3)
    if _p2p_hello(pl):
        return voip_label("zoom", "zoom-p2p-hello", 0.8)
    if flow.has_port(*ZOOM_PORTS) and _zoom_host(flow, ctx):
        return voip_label("zoom", "zoom-media-port", 0.6)
    return GIVE_UP if flow.npayload >= 2 else None


def _zoom_host(flow: Flow, ctx) -> bool:
    """The address knowledge ties one end of the flow to Zoom (looked up only when needed)."""
    known = ctx.knowledge.app_for_addr(flow.key.dst) or ctx.knowledge.app_for_addr(flow.key.src)
    return known is not None and known[0] == "zoom"


_ADDR_CHARS = frozenset(b"0123456789abcdefABCDEF.:")


def _p2p_hello(pl: bytes) -> bool:
    """Zoom P2P connectivity probe: type 0x1f/0x20, then at offset 24 the peer's address as a
    length-prefixed string followed by the length-prefixed (36-char) meeting UUID."""
    if len(pl) < 72 or pl[0] not in P2P_TYPES or pl[2:4] != b"\x01\x00":
        return False
    n = int.from_bytes(pl[24:28], "big")
    if not 7 <= n <= 45 or len(pl) < 32 + n + 36:
        return False
    if not all(c in _ADDR_CHARS for c in pl[28:28 + n]):
        return False
    off = 28 + n
    if int.from_bytes(pl[off:off + 4], "big") != 36:
        return False
    uuid = pl[off + 4:off + 40]
    return len(uuid) == 36 and uuid[8:9] == b"-" and uuid[13:14] == b"-" and uuid[23:24] == b"-"
