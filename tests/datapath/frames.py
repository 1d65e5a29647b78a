"""Frame builders shared by the data-path tests: one place that knows how a test
packet is put together (MACs, VLAN tags, tunnel headers), so each test reads as
the story it tells. Everything returns scapy packets or bytes for DP.run()."""

from __future__ import annotations

import socket
import struct

import pytest

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from tests.harness import DP
from xdpgate.control import layout
from xdpgate.control.layout import Reason, Verdict

MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"



@pytest.fixture(scope="module")
def module_dp(session_dp):
    """The session's harness (one Applier knows what the policy banks hold)."""
    return session_dp


@pytest.fixture
def dp(module_dp):
    """Like conftest's dp: empty flows, zero counters, allow-all policy, no sampling."""
    module_dp.apply("default: allow")
    module_dp.reset()
    module_dp.config(sample_pkts=0, fail_closed=0)
    yield module_dp
    module_dp.reset()


def outcome(d: DP, frame) -> tuple[int, int, int]:
    """(XDP action, reason, verdict) of one frame, read from the one counter cell it moved."""
    before = d.maps["counters"].counters()
    rv = d.run(frame)
    after = d.maps["counters"].counters()
    moved = [i for i, c in enumerate(after)
             if c[0] != (before[i][0] if i < len(before) else 0)]
    assert len(moved) == 1, f"one frame moved counter cells {moved}"
    assert after[moved[0]][0] - (before[moved[0]][0] if moved[0] < len(before) else 0) == 1
    r, v = divmod(moved[0], layout.V_MAX)
    return rv, (Reason(r) if r in Reason._value2member_map_ else r), Verdict(v)


def total_packets(d: DP) -> int:
    """Packets in every counter cell, whatever its reason (INTERNAL included)."""
    return sum(c[0] for c in d.maps["counters"].counters())


def htons(port: int) -> int:
    """A port as the flow key holds it (network order read as a host u16)."""
    return socket.htons(port)


def built(p: Packet) -> Packet:
    """The packet as it goes on the wire, with lengths and checksums filled in."""
    return p.__class__(bytes(p))


# endpoints used across the tests
C4, S4 = "10.0.0.1", "10.0.0.2"  # client, server
C6, S6 = "2001:db8::1", "2001:db8::2"
T4A, T4B = "192.0.2.1", "192.0.2.2"  # tunnel endpoints (outer)
T6A, T6B = "2001:db8:ff::1", "2001:db8:ff::2"

GTPU_PORT, VXLAN_PORT = 2152, 4789


def eth(vlans: tuple[int, ...] = (), qinq: bool = False) -> Packet:
    """Ethernet A->B with VLAN tags; qinq makes the outer tag 802.1ad."""
    e: Packet = Ether(src=MAC_A, dst=MAC_B)
    for i, vid in enumerate(vlans):
        e = e / (Dot1AD(vlan=vid) if qinq and i == 0 else Dot1Q(vlan=vid))
    return e


def ip(src: str, dst: str, **kw) -> Packet:
    """IPv4 or IPv6 header by the address family of src."""
    return IPv6(src=src, dst=dst, **kw) if ":" in src else IP(src=src, dst=dst, **kw)


def tcp(src: str = C4, dst: str = S4, sport: int = 40000, dport: int = 80, flags: str = "S",
        payload: bytes = b"", vlans: tuple[int, ...] = (), **tcpkw) -> Packet:
    p = eth(vlans) / ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags, **tcpkw)
    return p / payload if payload else p


def udp(src: str = C4, dst: str = S4, sport: int = 40000, dport: int = 53,
        payload: bytes = b"q" * 12, vlans: tuple[int, ...] = ()) -> Packet:
    return eth(vlans) / ip(src, dst) / UDP(sport=sport, dport=dport) / payload


def icmp(src: str = C4, dst: str = S4, vlans: tuple[int, ...] = ()) -> Packet:
    l4 = ICMPv6EchoRequest(id=7, seq=1) if ":" in src else ICMP(id=7, seq=1)
    return eth(vlans) / ip(src, dst) / l4 / (b"ping" * 4)


def arp() -> Packet:
    return Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=C4, pdst=S4)


# ---- tunnels ------------------------------------------------------------------

def inner_udp(src: str = C4, dst: str = S4, sport: int = 40000, dport: int = 5060,
              payload: bytes = b"inner") -> Packet:
    return ip(src, dst) / UDP(sport=sport, dport=dport) / payload


def inner_tcp(src: str = C4, dst: str = S4, sport: int = 40000, dport: int = 443) -> Packet:
    return ip(src, dst) / TCP(sport=sport, dport=dport, flags="S")


def pdu_session_container(qfi: int = 9, uplink: bool = True, next_type: int = 0) -> bytes:
    """GTP-U extension header 0x85 (TS 38.415), one 4-byte unit: len, type, QFI, next."""
    return bytes([1, (1 if uplink else 0) << 4, qfi & 0x3F, next_type])


def gtpu_hdr(teid: int, payload_len: int, *, seq: int | None = None, npdu: int | None = None,
             exts: list[tuple[int, bytes]] | None = None, msg_type: int = 0xFF,
             flags: int | None = None) -> bytes:
    """GTPv1-U header. exts: [(type, body)] where body is the whole extension header
    (its length byte first, its next-type byte last); the chain is linked here."""
    e = 1 if exts else 0
    s = 1 if seq is not None else 0
    pn = 1 if npdu is not None else 0
    fl = flags if flags is not None else 0x30 | (e << 2) | (s << 1) | pn
    opt = b""
    if e or s or pn:
        first = exts[0][0] if exts else 0
        opt = struct.pack("!HBB", seq or 0, npdu or 0, first)
        for i, (_, body) in enumerate(exts or []):
            nxt = exts[i + 1][0] if i + 1 < len(exts) else 0
            opt += body[:-1] + bytes([nxt])
    return struct.pack("!BBHI", fl, msg_type, len(opt) + payload_len, teid) + opt


def gtpu(inner: Packet | bytes, teid: int = 0x1001, outer: tuple[str, str] = (T4A, T4B),
         vlans: tuple[int, ...] = (), **kw) -> Packet:
    raw = bytes(inner)
    return (eth(vlans) / ip(*outer) / UDP(sport=GTPU_PORT, dport=GTPU_PORT) /
            Raw(gtpu_hdr(teid, len(raw), **kw) + raw))


def gre(inner: Packet, key: int | None = None, seq: int | None = None, csum: bool = False,
        outer: tuple[str, str] = (T4A, T4B), proto: int | None = None) -> Packet:
    kw: dict = {}
    if key is not None:
        kw.update(key_present=1, key=key)
    if seq is not None:
        kw.update(seqnum_present=1, sequence_number=seq)
    if csum:
        kw.update(chksum_present=1)
    if proto is None:
        proto = 0x6558 if isinstance(inner, Ether) else (0x86DD if isinstance(inner, IPv6)
                                                         else 0x0800)
    return eth() / ip(*outer) / GRE(proto=proto, **kw) / inner


def vxlan(inner_l3: Packet, vni: int = 42, outer: tuple[str, str] = (T4A, T4B),
          flags: int = 0x08) -> Packet:
    return (eth() / ip(*outer) / UDP(sport=49152, dport=VXLAN_PORT) /
            VXLAN(vni=vni, flags=flags) / Ether(src=MAC_A, dst=MAC_B) / inner_l3)


def ipip(inner: Packet, outer: tuple[str, str] = (T4A, T4B)) -> Packet:
    o = ip(*outer)
    if isinstance(o, IP):
        o.proto = 41 if isinstance(inner, IPv6) else 4
    else:
        o.nh = 41 if isinstance(inner, IPv6) else 4
    return eth() / o / inner
