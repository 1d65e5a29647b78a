"""DTLS (RFC 6347/9147) records; after STUN, or towards a conferencing app, it is call media.

Plain DTLS stays ``web``/``dtls`` (nDPI's convention); DTLS on a flow that already spoke STUN,
from a known ICE socket, or to an address tied to a conferencing app is ``voip``.
"""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, app_label, voip_label
from .stun import HOST_CALL_APPS
from .tls import parse_client_hello


CONTENT_TYPES = frozenset({20, 21, 22, 23, 25})
VERSIONS = frozenset({0xFEFF, 0xFEFD, 0xFEFC})
SPEC = Spec("dtls", frozenset({"udp"}), needs_payload=True, max_packets=6, priority=20,
            prefilter={"udp": Prefilter(CONTENT_TYPES, 2, ("stun_seen", "rtp_hits"))})


def is_dtls(pl: bytes) -> bool:
    if len(pl) < 13 or pl[0] not in CONTENT_TYPES:
        return False
    ver = struct.unpack_from("!H", pl, 1)[0]
    if ver not in VERSIONS:
        return False
    n = struct.unpack_from("!H", pl, 11)[0]
    return 0 < n <= 16384 + 2048 and 13 + n <= len(pl) + 2048


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    if not is_dtls(pl):
        if flow.state.get("stun_seen") or flow.state.get("rtp_hits"):
            return None
        return GIVE_UP if flow.npayload >= 2 else None
    if flow.state.get("stun_seen"):
        return voip_label("stun", "dtls-after-stun", 0.8)
    for addr in (flow.key.dst, flow.key.src):
        hit = ctx.knowledge.app_for_addr(addr)
        if hit is not None and hit[0] in HOST_CALL_APPS:
            return voip_label(HOST_CALL_APPS[hit[0]], f"dtls+host:{hit[1]}", 0.75)
    sni = None
    if pl[0] == 22 and len(pl) > 25 and pl[19:22] == b"\0\0\0":
        # the first fragment of a handshake message: its 12-byte DTLS header less the
        # message sequence and fragment fields is the TLS one
        r = parse_client_hello(pl[13:17] + pl[25:])
        if r is not None:
            sni = r[0]
    if sni:
        app = ctx.knowledge.app_for_name(sni)
        if app in HOST_CALL_APPS:
            return voip_label(HOST_CALL_APPS[app], f"dtls-sni:{sni}"[:60], 0.8)
    return app_label("dtls", "dtls-record", 0.6, l4="udp", carrier=True)
