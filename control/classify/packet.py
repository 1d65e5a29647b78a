"""The classifier's packet sample and the flow key parsed from it.

A ``Packet`` starts at the (innermost) IP header; it may be truncated to a snap length, so
every parser here checks bounds and treats a short header as "no ports" rather than failing.
All multi-byte fields are network byte order.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ..layout import Sizes

SNAPLEN = Sizes().sample_bytes  # bytes of each sampled IP packet the classifier gets
# A payload this long may have been cut at SNAPLEN (IP and transport headers take no more
# than this difference in the packets that matter); a shorter one is whole.
MAY_BE_CUT = SNAPLEN - 128

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

# IPv6 extension headers the parser skips: hop-by-hop, routing, destination options, (AH is
# special: its length is in 4-byte units), fragment (handled separately), mobility.
_V6_EXT = {0, 43, 60, 135, 139, 140}
_V6_FRAG = 44
_AH = 51

_L4_NAME = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}


@dataclass(slots=True)
class Packet:
    """One sampled packet: ``data`` starts at the IP header (v4 or v6, innermost if tunnelled).

    ``seq`` is the packet's number within its flow (from 0) and ``dir`` 0 if the flow's
    initiator sent it, 1 if it goes towards the initiator; -1 where the feeder does not know.
    With them, packets the data path counts but does not send (see :func:`sampled`) still
    count against the packet budget, and a flow first seen by a reply still has its initiator
    as the client."""

    ts: float
    data: bytes
    wire_len: int
    tunnel: tuple[str, int] | None = None
    seq: int = -1
    dir: int = -1


@dataclass(frozen=True, slots=True)
class FlowKey:
    """A flow as printed: the client (first packet's sender) first; ports 0 for non-TCP/UDP."""

    l4: str
    src: str
    sport: int
    dst: str
    dport: int
    tunnel: tuple[str, int] | None = None

    def reversed(self) -> FlowKey:
        return FlowKey(self.l4, self.dst, self.dport, self.src, self.sport, self.tunnel)


@dataclass(slots=True)
class Parsed:
    """What the classifier needs from one packet's headers."""

    l4: str  # tcp / udp / icmp / other
    proto: int  # IP protocol number of the transport header
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes  # transport payload (possibly truncated); b"" when there is none
    tcp_flags: int = 0
    later_fragment: bool = False  # a non-first IP fragment: no transport header, no ports
    ip_id: int = 0  # IPv4 id / IPv6 fragment id, for matching fragments
    more_fragments: bool = False

    def key(self, tunnel: tuple[str, int] | None = None) -> FlowKey:
        return FlowKey(self.l4, self.src, self.sport, self.dst, self.dport, tunnel)

    def canonical(self, tunnel: tuple[str, int] | None = None) -> tuple:
        """Direction-independent lookup key (see :func:`canonical`)."""
        return canonical(self.l4, self.src, self.sport, self.dst, self.dport, tunnel)


def canonical(l4: str, src: str, sport: int, dst: str, dport: int,
              tunnel: tuple[str, int] | None = None) -> tuple:
    """A flow's direction-independent key: the lower endpoint first, in one flat tuple of
    atoms (no nested tuples), which the cyclic GC stops tracking the first time it looks."""
    if src < dst or (src == dst and sport <= dport):
        return (l4, src, sport, dst, dport, tunnel)
    return (l4, dst, dport, src, sport, tunnel)


def _l4_fields(proto: int, buf: bytes, off: int, later_fragment: bool) -> tuple[int, int, bytes, int]:
    """(sport, dport, payload, tcp_flags) for the transport header at ``off``."""
    if later_fragment:
        return 0, 0, b"", 0
    if proto == IPPROTO_UDP:
        if len(buf) < off + 8:
            return 0, 0, b"", 0
        sport, dport = struct.unpack_from("!HH", buf, off)
        return sport, dport, buf[off + 8 :], 0
    if proto == IPPROTO_TCP:
        if len(buf) < off + 14:
            return 0, 0, b"", 0
        sport, dport = struct.unpack_from("!HH", buf, off)
        doff = (buf[off + 12] >> 4) * 4
        flags = buf[off + 13]
        if doff < 20:
            return sport, dport, b"", flags
        return sport, dport, buf[off + doff :], flags
    return 0, 0, buf[off:], 0


def parse_ip(buf: bytes) -> Parsed | None:
    """Parse an IPv4 or IPv6 packet's addresses, transport ports and payload; None if not IP."""
    if len(buf) < 20:
        return None
    ver = buf[0] >> 4
    if ver == 4:
        ihl = (buf[0] & 0x0F) * 4
        if ihl < 20 or len(buf) < ihl:
            return None
        total = struct.unpack_from("!H", buf, 2)[0]
        if ihl <= total < len(buf):  # drop link-layer padding
            buf = buf[:total]
        ip_id, frag = struct.unpack_from("!HH", buf, 4)
        offset = frag & 0x1FFF
        more = bool(frag & 0x2000)
        proto = buf[9]
        src = socket.inet_ntop(socket.AF_INET, buf[12:16])
        dst = socket.inet_ntop(socket.AF_INET, buf[16:20])
        later = offset != 0
        sport, dport, payload, flags = _l4_fields(proto, buf, ihl, later)
        return Parsed(_L4_NAME.get(proto, "other"), proto, src, sport, dst, dport, payload,
                      flags, later, ip_id, more)
    if ver == 6:
        if len(buf) < 40:
            return None
        plen = struct.unpack_from("!H", buf, 4)[0]
        if 0 < plen and 40 + plen < len(buf):
            buf = buf[: 40 + plen]
        nxt = buf[6]
        src = socket.inet_ntop(socket.AF_INET6, buf[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, buf[24:40])
        off = 40
        later = False
        more = False
        ip_id = 0
        for _ in range(8):  # bounded walk of the extension header chain
            if nxt in _V6_EXT:
                if len(buf) < off + 2:
                    break
                nxt, hlen = buf[off], (buf[off + 1] + 1) * 8
                off += hlen
            elif nxt == _AH:
                if len(buf) < off + 2:
                    break
                nxt, hlen = buf[off], (buf[off + 1] + 2) * 4
                off += hlen
            elif nxt == _V6_FRAG:
                if len(buf) < off + 8:
                    break
                fo = struct.unpack_from("!H", buf, off + 2)[0]
                ip_id = struct.unpack_from("!I", buf, off + 4)[0]
                later = (fo >> 3) != 0
                more = bool(fo & 1)
                nxt = buf[off]
                off += 8
            else:
                break
        proto = nxt
        sport, dport, payload, flags = _l4_fields(proto, buf, off, later)
        return Parsed(_L4_NAME.get(proto, "other"), proto, src, sport, dst, dport, payload,
                      flags, later, ip_id, more)
    return None


def sampled(p: Parsed, seq: int, max_packets: int) -> bool:
    """Whether packet number ``seq`` of a flow, parsed from its whole IP packet, is handed to
    the classifier. A TCP segment without payload (handshake, bare ACK) carries nothing to
    classify: it uses its place in the budget but is not sent, unless it is the budget's last
    packet, which tells the classifier the flow is done. The data path (bpf/xdpgate.c, where
    it samples) decides the same way; the offline classifier calls this."""
    return p.proto != IPPROTO_TCP or bool(p.payload) or seq + 1 >= max_packets


def flow_key(pkt: Packet) -> FlowKey | None:
    """The packet's flow key as seen (sender first), or None if it is not IP."""
    p = parse_ip(pkt.data)
    if p is None:
        return None
    return p.key(pkt.tunnel)
