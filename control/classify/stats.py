"""Encrypted UDP with no signature: packet-size and timing statistics typical of calls.

Voice and video codecs send small packets at a steady rate (every 10-60 ms) in both
directions; bulk transfers send large packets, request/response protocols send few.  A flow
that looks like that gets ``category: voip`` with a low confidence and reason ``voip-stats``.
"""

from __future__ import annotations

from statistics import median

from .base import Flow, Label

MIN_PACKETS = 8
SIZE_RANGE = (40, 1100)  # payload bytes of audio and video frames
IAT_RANGE = (0.01, 0.07)  # seconds between packets of one direction
MIN_SHARE_IN_RANGE = 0.8
CONFIDENCE = 0.35
MIN_PER_DIRECTION = 2  # a call carries media both ways
MAX_ZERO_SHARE = 0.25  # encrypted (SRTP-like) media is near-random: few zero bytes
# codecs send a frame every 10, 20, 30, 40 or 60 ms (SDP ptime): the pace sits near a multiple
PTIME_STEP = 0.01
PTIME_SLACK = 0.0025


def match(flow: Flow, ctx) -> Label | None:
    samples = [s for s in flow.samples if s.payload]
    if len(samples) < MIN_PACKETS:
        return None
    sizes = [len(s.payload) for s in samples]
    lo, hi = SIZE_RANGE
    if sum(1 for n in sizes if lo <= n <= hi) < MIN_SHARE_IN_RANGE * len(sizes):
        return None
    if len(set(sizes)) == 1 and sizes[0] < 60:
        return None  # identical tiny packets: keepalives, not media
    iats = []
    for d in (0, 1):
        ts = [s.ts for s in samples if s.dir == d]
        iats += [b - a for a, b in zip(ts, ts[1:])]
    if len(iats) < MIN_PACKETS - 2:
        return None
    m = median(iats)
    if not IAT_RANGE[0] <= m <= IAT_RANGE[1]:
        return None
    if abs(m - round(m / PTIME_STEP) * PTIME_STEP) > PTIME_SLACK:
        return None  # a game's tick (15.6, 16.7, 33 ms), not a codec's frame time
    if _printable_share(samples) > 0.7:
        return None  # text protocol, not encrypted media
    if len({s.payload for s in samples}) < len(samples):
        return None  # a repeated datagram is a retried handshake or keep-alive, not media
    if _zero_share(samples) > MAX_ZERO_SHARE:
        return None  # zero-padded structured messages (game/control), not encrypted media
    if min(sum(1 for s in samples if s.dir == d) for d in (0, 1)) < MIN_PER_DIRECTION:
        return None
    if len({s.dir for s in samples}) < 2:
        return None  # a call talks both ways
    jitter = median(abs(x - m) for x in iats)
    if jitter > 0.5 * m:
        return None  # codecs pace their frames; bursts are something else
    return Label("unknown", "voip", CONFIDENCE, "voip-stats")


def _printable_share(samples) -> float:
    data = b"".join(s.payload[:64] for s in samples)
    if not data:
        return 0.0
    return sum(1 for c in data if 32 <= c < 127 or c in (9, 10, 13)) / len(data)


def _zero_share(samples) -> float:
    data = b"".join(s.payload[12:64] for s in samples)  # past an RTP-sized header
    if not data:
        return 0.0
    return data.count(0) / len(data)
