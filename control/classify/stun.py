"""STUN / TURN / ICE (RFC 3489, 5389/8489, 8656, 6062), with the attributes that name the app.

A STUN message: two zero bits, a 14-bit message type, a length that is a multiple of 4 and
covers the attributes exactly, the magic cookie 0x2112A442 (RFC 5389) or, for classic STUN, a
known message type and well-formed attributes.  Over TCP it comes bare or with an RFC 4571
two-byte length.  TURN ChannelData (channel 0x4000-0x7FFF) continues a flow that spoke STUN.
A STUN flow's sockets are remembered as call endpoints (ICE reuses them for media).
"""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label


MAGIC = 0x2112A442
CLASSIC_TYPES = {0x0001, 0x0101, 0x0111, 0x0002, 0x0102, 0x0112}
STD_METHODS = set(range(0x001, 0x00D))  # binding .. connection-attempt
# Message types outside the standard methods that call apps use.
APP_MSG_TYPES = {0x0800: "whatsapp-call", 0x0801: "whatsapp-call", 0x0802: "whatsapp-call",
                 0x0804: "whatsapp-call", 0x0805: "whatsapp-call"}
ATTR_REALM, ATTR_SOFTWARE, ATTR_USERNAME = 0x0014, 0x8022, 0x0006

# attribute type -> app whose clients send it (with an optional value check below)
APP_ATTRS: dict[int, str] = {
    0x8054: "skype-teams-call",  # MS-CANDIDATE-IDENTIFIER
    0x8055: "skype-teams-call",  # MS-SERVICE-QUALITY
    0x8070: "skype-teams-call",  # MS-IMPLEMENTATION-VERSION
    0x8006: "skype-teams-call",  # MS-VERSION
    0x8008: "skype-teams-call",  # MS-SEQUENCE-NUMBER
    0x8050: "skype-teams-call",  # MS-SEQUENCE-NUMBER (TURN)
    0x0103: "zoom",
    0x4000: "whatsapp-call", 0x4001: "whatsapp-call", 0x4002: "whatsapp-call",
    0x4003: "whatsapp-call", 0x4004: "whatsapp-call", 0x4007: "whatsapp-call",
}
# libwebrtc's own attributes (GOOG-NETWORK-INFO 0xC057, GOOG-MISC-INFO 0xC060, ...): every
# WebRTC app sends them, Chrome tabs, Meet, Discord, Signal and Messenger alike, so they say
# "a WebRTC call", not whose
WEBRTC_ATTRS = frozenset({0xFF03, 0xC057, 0xC058, 0xC059, 0xC05A, 0xC060})
# REALM / SOFTWARE text -> app
TEXT_APPS: tuple[tuple[bytes, str], ...] = (
    (b"google.com", "google-call"), (b"signal.org", "signal-call"),
    (b"whispersystems", "signal-call"), (b"facebook", "facebook-call"),
    (b"whatsapp", "whatsapp-call"), (b"telegram", "telegram-call"),
    (b"zoom", "zoom"), (b"discord", "discord"), (b"microsoft", "skype-teams-call"),
    (b"skype", "skype-teams-call"), (b"teams", "skype-teams-call"),
    (b"viber", "viber-call"), (b"webex", "webex"), (b"snapchat", "snapchat-call"),
)
# an app of the address knowledge that says whose call this is
HOST_CALL_APPS = {
    "whatsapp": "whatsapp-call", "facebook": "facebook-call", "telegram": "telegram-call",
    "signal": "signal-call", "viber": "viber-call", "skype-teams": "skype-teams-call",
    "teams": "skype-teams-call", "google": "google-call", "googleservices": "google-call",
    "google-meet": "google-call", "zoom": "zoom", "discord": "discord", "webex": "webex",
    "snapchat": "snapchat-call", "line": "line-call", "kakaotalk": "kakaotalk-call",
    "imo": "imo",
}
SPEC = Spec("stun", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=8, priority=15,
            # the two top bits of a message are zero (over TCP a length may come first)
            prefilter={"udp": Prefilter(first_bytes(range(0x40)), 2, ("stun_seen",))})


def parse(msg: bytes) -> tuple[int, list[tuple[int, bytes]]] | None:
    """(message type, attributes) of one STUN message, or None if it is not STUN."""
    if len(msg) < 20 or msg[0] & 0xC0:
        return None
    mtype, mlen, cookie = struct.unpack_from("!HHI", msg, 0)
    if mlen % 4 or 20 + mlen > len(msg) + 0:
        return None
    if 20 + mlen != len(msg):
        return None
    method = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2)
    if cookie != MAGIC:
        if mtype not in CLASSIC_TYPES or mlen == 0 and len(msg) != 20:
            return None
    elif method not in STD_METHODS and mtype not in APP_MSG_TYPES:
        return None
    attrs = []
    off = 20
    while off + 4 <= 20 + mlen:
        at, al = struct.unpack_from("!HH", msg, off)
        val = msg[off + 4 : off + 4 + al]
        if len(val) != al:
            return None
        attrs.append((at, val))
        off += 4 + al + ((4 - al % 4) % 4)
    if off != 20 + mlen:
        return None
    if cookie != MAGIC and not attrs and mlen:
        return None
    return mtype, attrs


def app_from(mtype: int, attrs: list[tuple[int, bytes]]) -> tuple[str | None, str]:
    """(call app, what said so) from the message type and attributes."""
    if mtype in APP_MSG_TYPES:
        return APP_MSG_TYPES[mtype], f"stun-type:{mtype:#06x}"
    for at, val in attrs:
        if at in (ATTR_REALM, ATTR_SOFTWARE):
            low = val.lower()
            for word, app in TEXT_APPS:
                if word in low:
                    return app, f"stun-text:{app}"
    for at, val in attrs:
        app = APP_ATTRS.get(at)
        if app is not None:
            return app, f"stun-attr:{app}"
    return None, "stun"


def _messages(flow: Flow, pl: bytes) -> list[bytes]:
    if flow.l4 == "udp":
        return [pl]
    out = [pl]
    if len(pl) >= 22 and struct.unpack_from("!H", pl, 0)[0] + 2 <= len(pl):
        n = struct.unpack_from("!H", pl, 0)[0]
        out.append(pl[2 : 2 + n])
    if len(pl) >= 20:  # bare STUN over TCP may carry several messages back to back
        n = struct.unpack_from("!H", pl, 2)[0] + 20
        if n < len(pl):
            out.append(pl[:n])
    return out


WEB_PORTS = (80, 443)


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    st = flow.state
    for msg in _messages(flow, pl):
        r = parse(msg)
        if r is None:
            continue
        mtype, attrs = r
        app, why = app_from(mtype, attrs)
        st["stun_n"] = st.get("stun_n", 0) + 1
        if app is None:
            app, why = _app_from_hosts(flow, ctx)
        if app is None:
            st.setdefault("stun_seen", True)
            # plain STUN: decide now, but keep looking at the next packets for an app hint
            if st["stun_n"] < 2 and len(flow.samples) < 3 and flow.l4 == "udp":
                return voip_label("stun", "stun-header", 0.45)
            app, why = "stun", "stun-header"
        lab = voip_label(app, why, 0.9 if app != "stun" else 0.8)
        ts = flow.last_ts
        ctx.remember_call_endpoint(flow.l4, flow.key.src, flow.key.sport, lab, ts)
        if flow.l4 == "udp" and flow.key.dport not in WEB_PORTS:
            # a TURN relay's socket carries the call too; a web server's also serves QUIC
            ctx.remember_call_endpoint(flow.l4, flow.key.dst, flow.key.dport, lab, ts)
        return lab
    if st.get("stun_seen"):
        return None  # other traffic (DTLS, RTP) interleaved with STUN: keep the tentative label
    if flow.npayload >= 2:
        return GIVE_UP
    return None


def _app_from_hosts(flow: Flow, ctx) -> tuple[str | None, str]:
    for addr in (flow.key.dst, flow.key.src):
        hit = ctx.knowledge.app_for_addr(addr)
        if hit is not None and hit[0] in HOST_CALL_APPS:
            return HOST_CALL_APPS[hit[0]], f"stun+host:{hit[1]}"
    return None, "stun"
