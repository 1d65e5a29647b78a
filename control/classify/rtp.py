"""RTP and RTCP (RFC 3550), SRTP alike: header checks across packets.

One packet with a plausible RTP header is only a hint; two packets of one direction with the
same SSRC, a sequence number a little ahead and a timestamp not behind decide the flow.  RTCP
is recognised by a compound packet whose first report is SR/RR with a consistent length, SRTCP
by two such clear first headers (one SSRC per side) followed by the encrypted remainder.  Over
TCP, RTP/RTCP come framed with a two-byte length (RFC 4571).
"""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Prefilter, Spec, first_bytes, voip_label
from .packet import MAY_BE_CUT
from .stun import HOST_CALL_APPS


# static audio/video payload types (RFC 3551) and the dynamic range
RTP_PAYLOAD_TYPES = frozenset(
    {0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 25, 26, 28, 31, 32, 33, 34}
    | set(range(96, 128)))
RTCP_TYPES = frozenset(range(200, 208))  # SR RR SDES BYE APP RTPFB PSFB XR
RTCP_FIRST = frozenset({200, 201})
MAX_SEQ_STEP = 100
MAX_TS_STEP = 48000 * 10  # ten seconds at 48 kHz
SPEC = Spec("rtp", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=8, priority=40,
            # RTP and (S)RTCP version 2 (over TCP a length comes first)
            prefilter={"udp": Prefilter(first_bytes(range(0x80, 0xC0)), 2, ("stun_seen",))})


def rtp_header(pl: bytes) -> tuple[int, int, int, int] | None:
    """(payload type, seq, timestamp, ssrc) if ``pl`` starts like RTP v2, else None."""
    if len(pl) < 12 or pl[0] >> 6 != 2:
        return None
    pt = pl[1] & 0x7F
    if pt not in RTP_PAYLOAD_TYPES:
        return None
    cc = pl[0] & 0x0F
    if len(pl) < 12 + 4 * cc:
        return None
    seq, ts, ssrc = struct.unpack_from("!HII", pl, 2)
    return pt, seq, ts, ssrc


def _first_report_words(pl: bytes) -> int | None:
    """The length field (in 32-bit words, less one) of an RTCP SR or RR header at the start
    of `pl`, or None unless it is one whose length fits its report count exactly."""
    if len(pl) < 8 or pl[0] >> 6 != 2 or pl[1] not in RTCP_FIRST:
        return None
    words = struct.unpack_from("!H", pl, 2)[0]
    if words != (6 if pl[1] == 200 else 1) + 6 * (pl[0] & 0x1F):
        return None
    return words


def is_rtcp(pl: bytes) -> bool:
    """A compound RTCP packet starting with SR or RR whose report lengths add up exactly."""
    if _first_report_words(pl) is None:
        return False
    off = 0
    for _ in range(8):
        if off + 4 > len(pl):
            return False
        if pl[off] >> 6 != 2 or pl[off + 1] not in RTCP_TYPES:
            return False
        off += (struct.unpack_from("!H", pl, off + 2)[0] + 1) * 4
        if off == len(pl):
            return True
        if off > len(pl):
            return len(pl) >= MAY_BE_CUT  # cut by the snap length
    return False


def is_srtcp(pl: bytes) -> bool:
    """SRTCP (RFC 3711): the first SR/RR header is in clear with an exact length, the rest of
    the compound is encrypted and followed by the E-flag/index word and the auth tag."""
    words = _first_report_words(pl)
    if words is None:
        return False
    tail = len(pl) - (words + 1) * 4
    return 8 <= tail <= 1200


def _frames(flow: Flow, pl: bytes) -> bytes:
    if flow.l4 == "tcp":
        if len(pl) < 14:
            return b""
        n = struct.unpack_from("!H", pl, 0)[0]
        if n < 12 or n > len(pl) - 2 + 1500:
            return b""
        return pl[2:]
    return pl


def _continues(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    if a[3] != b[3]:
        return False
    dseq = (b[1] - a[1]) & 0xFFFF
    dts = (b[2] - a[2]) & 0xFFFFFFFF
    return 0 < dseq <= MAX_SEQ_STEP and dts <= MAX_TS_STEP


def match(flow: Flow, ctx) -> Label | None:
    s = flow.last
    pl = _frames(flow, s.payload)
    st = flow.state
    hdr = rtp_header(pl)
    if hdr is not None and not (72 <= (pl[1] & 0x7F) <= 76):
        prev = st.setdefault("rtp", {})
        last = prev.get(s.dir)
        prev[s.dir] = hdr
        if last is not None and _continues(last, hdr):
            return _label(flow, ctx, "rtp", "rtp-seq-ssrc", 0.85)
        st["rtp_hits"] = st.get("rtp_hits", 0) + 1
        if st["rtp_hits"] >= 3:
            return GIVE_UP  # three headers that never continue each other: not RTP
        return None  # one header alone is chance (a quarter of random bytes look like it)
    if is_rtcp(pl):
        st["rtcp_hits"] = st.get("rtcp_hits", 0) + 1
        if st["rtcp_hits"] >= 2 or len(pl) >= 28:
            return _label(flow, ctx, "rtcp", "rtcp-compound", 0.7)
        return _label(flow, ctx, "rtcp", "rtcp-header", 0.3)
    if is_srtcp(pl):
        ssrcs = st.setdefault("srtcp", set())
        ssrcs.add(pl[4:8])
        st["srtcp_hits"] = st.get("srtcp_hits", 0) + 1
        if st["srtcp_hits"] >= 2 and len(ssrcs) <= 2:  # one sender per side
            return _label(flow, ctx, "rtcp", "srtcp-header", 0.7)
        return None
    if st.get("stun_seen"):
        return None  # interleaved with STUN/DTLS: keep watching
    if flow.npayload >= 2:
        return GIVE_UP  # a second packet that is not RTP/RTCP: the first one was chance
    return None


def _label(flow: Flow, ctx, app: str, reason: str, conf: float) -> Label:
    for addr in (flow.key.dst, flow.key.src):
        hit = ctx.knowledge.app_for_addr(addr)
        if hit is not None and hit[0] in HOST_CALL_APPS:
            app = HOST_CALL_APPS[hit[0]]
            reason = f"{reason}+host"
            break
    return voip_label(app, reason, conf)
