"""BitTorrent: the TCP peer handshake, uTP (BEP 29) connection set-up, the DHT (BEP 5) KRPC
messages in bencoding, and tracker announces over UDP (BEP 15)."""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Spec, app_label

SPEC = Spec("bittorrent", frozenset({"tcp", "udp"}), needs_payload=True, max_packets=4,
            priority=32)

HANDSHAKE = b"\x13BitTorrent protocol"
DHT_PREFIXES = (b"d1:ad2:id20:", b"d1:rd2:id20:", b"d1:eli", b"d1:q", b"d2:ip", b"d1:t",
                b"d1:y1:")
DHT_WORDS = (b"1:y1:q", b"1:y1:r", b"1:y1:e", b"9:info_hash20:", b"6:target20:")
UDP_TRACKER_MAGIC = b"\x00\x00\x04\x17\x27\x10\x19\x80"
UTP_VERSION = 1
UTP_SYN, UTP_STATE = 4, 2


def _utp(pl: bytes) -> tuple[int, int, int] | None:
    """(type, connection id, ack) of a uTP header, or None."""
    if len(pl) < 20 or pl[0] & 0x0F != UTP_VERSION or pl[0] >> 4 > 4 or pl[1] > 4:
        return None
    off = 20
    ext = pl[1]
    for _ in range(4):  # extension chain: (next, len, bytes)
        if ext == 0:
            break
        if len(pl) < off + 2:
            return None
        ext, n = pl[off], pl[off + 1]
        off += 2 + n
        if off > len(pl):
            return None
    if ext != 0:
        return None
    cid = struct.unpack_from("!H", pl, 2)[0]
    ack = struct.unpack_from("!H", pl, 18)[0]
    return pl[0] >> 4, cid, ack


def match(flow: Flow, ctx) -> Label | None:
    s = flow.last
    pl = s.payload
    if HANDSHAKE in pl[:80]:
        return app_label("bittorrent", "bt-handshake", 0.95, l4=flow.l4)
    if flow.l4 == "tcp":
        return GIVE_UP if flow.npayload >= 2 else None
    if pl.startswith(b"d") and (pl.startswith(DHT_PREFIXES) or
                                any(w in pl[:300] for w in DHT_WORDS)) and pl.rstrip()[-1:] == b"e":
        return app_label("bittorrent", "bt-dht-krpc", 0.9, l4="udp")
    if pl.startswith(UDP_TRACKER_MAGIC) and len(pl) >= 16:
        return app_label("bittorrent", "bt-udp-tracker", 0.9, l4="udp")
    u = _utp(pl)
    if u is not None:
        st = flow.state
        if u[0] == UTP_SYN and s.dir == 0 and len(pl) == 20:
            st["utp_syn"] = u[1]
            return app_label("bittorrent", "utp-syn", 0.45, l4="udp")
        if u[0] == UTP_STATE and s.dir == 1 and st.get("utp_syn") == u[1]:
            return app_label("bittorrent", "utp-syn-state", 0.9, l4="udp")
        if "utp_syn" in st:
            return None
    return GIVE_UP if flow.npayload >= 2 else None
