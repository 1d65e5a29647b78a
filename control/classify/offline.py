"""Offline classification of a pcap/pcapng capture with the live path's Classifier.

Link layers: Ethernet (802.1Q/QinQ, MPLS, PPPoE), Linux cooked SLL/SLL2, raw IP, BSD loopback,
PPP and Cisco HDLC.
Tunnels opened like the data path does (at most ``MAX_TUNNEL_DEPTH`` levels): GTP-U (UDP 2152),
VXLAN (UDP 4789), GRE (IP proto 47, version 0) and IP-in-IP / IPv6-in-IP.  Every packet handed
to the classifier is cut to ``snaplen`` bytes of its IP packet, and a flow gets at most
``max_packets`` packets, of which TCP segments without payload are counted but not fed
(as the data path samples: ``packet.sampled``); packets and bytes are counted for all packets.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from dataclasses import dataclass
from typing import IO, Iterator

from .engine import Classifier
from .packet import SNAPLEN, Packet, canonical, parse_ip, sampled

MAX_TUNNEL_DEPTH = 2
GTPU_PORT = 2152
VXLAN_PORT = 4789

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100
ETH_MPLS, ETH_MPLS_MC, ETH_PPPOE, ETH_TEB = 0x8847, 0x8848, 0x8864, 0x6558

DLT_NULL, DLT_EN10MB, DLT_RAW_A, DLT_RAW_B, DLT_LOOP = 0, 1, 12, 14, 108
DLT_RAW, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_IPV4, DLT_IPV6 = 101, 113, 276, 228, 229
DLT_PPP, DLT_PPP_SERIAL, DLT_C_HDLC = 9, 50, 104
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057

FIELDS = ("l4", "src", "sport", "dst", "dport", "app", "category", "confidence", "reason",
          "packets", "bytes")


@dataclass(slots=True)
class FlowRecord:
    l4: str
    src: str
    sport: int
    dst: str
    dport: int
    app: str
    category: str
    confidence: float
    reason: str
    call: str
    packets: int
    bytes: int
    tunnel: tuple[str, int] | None = None

    def as_dict(self) -> dict:
        d = {f: getattr(self, f) for f in FIELDS}
        d["confidence"] = round(float(self.confidence), 3)
        d["call"] = self.call
        return d


def _ether(buf: bytes, off: int) -> tuple[int, int] | None:
    """(ethertype, offset of the payload) of an Ethernet frame, through VLAN/MPLS/PPPoE."""
    if len(buf) < off + 14:
        return None
    et = struct.unpack_from("!H", buf, off + 12)[0]
    off += 14
    for _ in range(4):
        if et in (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD):
            if len(buf) < off + 4:
                return None
            et = struct.unpack_from("!H", buf, off + 2)[0]
            off += 4
        else:
            break
    if et in (ETH_MPLS, ETH_MPLS_MC):
        for _ in range(8):
            if len(buf) < off + 4:
                return None
            bottom = buf[off + 2] & 1
            off += 4
            if bottom:
                break
        if len(buf) <= off:
            return None
        v = buf[off] >> 4
        et = ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0
    elif et == ETH_PPPOE:
        if len(buf) < off + 8:
            return None
        proto = struct.unpack_from("!H", buf, off + 6)[0]
        off += 8
        et = ETH_IPV4 if proto == 0x0021 else ETH_IPV6 if proto == 0x0057 else 0
    return et, off


def _ppp_or_hdlc(buf: bytes) -> bytes | None:
    """PPP (with or without the ff 03 address/control bytes) or Cisco HDLC framing."""
    if len(buf) < 5:
        return None
    if buf[0] in (0x0F, 0x8F) and buf[1] == 0:  # Cisco HDLC: address, control, ethertype
        et = struct.unpack_from("!H", buf, 2)[0]
        return buf[4:] if et in (ETH_IPV4, ETH_IPV6) else None
    off = 2 if buf[:2] == b"\xff\x03" else 0
    proto = struct.unpack_from("!H", buf, off)[0]
    return buf[off + 2:] if proto in (PPP_IPV4, PPP_IPV6) else None


def link_to_ip(linktype: int, buf: bytes) -> bytes | None:
    """The IP packet inside one captured frame, or None."""
    if linktype == DLT_EN10MB:
        r = _ether(buf, 0)
        if r is None or r[0] not in (ETH_IPV4, ETH_IPV6):
            return None
        return buf[r[1]:]
    if linktype in (DLT_RAW, DLT_RAW_A, DLT_RAW_B, DLT_IPV4, DLT_IPV6):
        return buf
    if linktype == DLT_LINUX_SLL:
        if len(buf) < 16:
            return None
        et = struct.unpack_from("!H", buf, 14)[0]
        off = 16
        if et in (ETH_VLAN, ETH_QINQ) and len(buf) >= 20:
            et = struct.unpack_from("!H", buf, 18)[0]
            off = 20
        return buf[off:] if et in (ETH_IPV4, ETH_IPV6) else None
    if linktype == DLT_LINUX_SLL2:
        if len(buf) < 20:
            return None
        et = struct.unpack_from("!H", buf, 0)[0]
        return buf[20:] if et in (ETH_IPV4, ETH_IPV6) else None
    if linktype in (DLT_PPP, DLT_PPP_SERIAL, DLT_C_HDLC):
        return _ppp_or_hdlc(buf)
    if linktype in (DLT_NULL, DLT_LOOP):
        if len(buf) < 5:
            return None
        return buf[4:] if buf[4] >> 4 in (4, 6) else None
    return None


def _ip_payload(ip: bytes) -> tuple[int, int, bytes] | None:
    """(proto, dport, payload-after-transport) for an unfragmented IP packet, else None."""
    if not ip:
        return None
    v = ip[0] >> 4
    if v == 4:
        if len(ip) < 20:
            return None
        ihl = (ip[0] & 0x0F) * 4
        if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
            return None  # fragmented: do not open tunnels in pieces
        proto = ip[9]
        off = ihl
    elif v == 6:
        if len(ip) < 40:
            return None
        proto = ip[6]
        off = 40
    else:
        return None
    if proto == 17:
        if len(ip) < off + 8:
            return None
        sport, dport = struct.unpack_from("!HH", ip, off)
        return proto, dport if dport in (GTPU_PORT, VXLAN_PORT) else sport, ip[off + 8:]
    return proto, 0, ip[off:]


def decapsulate(ip: bytes) -> tuple[bytes, tuple[str, int] | None]:
    """Open GTP-U, VXLAN, GRE and IP-in-IP tunnels; return (inner IP packet, tunnel)."""
    tunnel = None
    for _ in range(MAX_TUNNEL_DEPTH):
        r = _ip_payload(ip)
        if r is None:
            break
        proto, port, pl = r
        inner = None
        if proto == 17 and port == GTPU_PORT:
            if len(pl) >= 8 and (pl[0] >> 5) == 1 and pl[1] == 0xFF:
                teid = struct.unpack_from("!I", pl, 4)[0]
                off = 8
                if pl[0] & 0x07:
                    if len(pl) < 12:
                        break
                    nxt = pl[11]
                    off = 12
                    for _ in range(8):
                        if not nxt or len(pl) <= off:
                            break
                        ln = pl[off] * 4
                        if ln == 0 or len(pl) < off + ln:
                            nxt = 0xFF
                            break
                        nxt = pl[off + ln - 1]
                        off += ln
                    if nxt:
                        break
                if len(pl) > off and pl[off] >> 4 in (4, 6):
                    inner, tunnel = pl[off:], ("gtpu", teid)
        elif proto == 17 and port == VXLAN_PORT:
            if len(pl) >= 8 and pl[0] & 0x08:
                vni = int.from_bytes(pl[4:7], "big")
                e = _ether(pl, 8)
                if e is not None and e[0] in (ETH_IPV4, ETH_IPV6):
                    inner, tunnel = pl[e[1]:], ("vxlan", vni)
        elif proto == 47:
            if len(pl) >= 4 and (pl[1] & 0x07) == 0:
                flags = pl[0]
                ptype = struct.unpack_from("!H", pl, 2)[0]
                off = 4
                key = 0
                if flags & 0x80:
                    off += 4
                if flags & 0x20:
                    if len(pl) < off + 4:
                        break
                    key = struct.unpack_from("!I", pl, off)[0]
                    off += 4
                if flags & 0x10:
                    off += 4
                if ptype in (ETH_IPV4, ETH_IPV6):
                    inner = pl[off:]
                elif ptype == ETH_TEB:
                    e = _ether(pl, off)
                    if e is not None and e[0] in (ETH_IPV4, ETH_IPV6):
                        inner = pl[e[1]:]
                if inner is not None:
                    tunnel = ("gre", key)
        elif proto in (4, 41):
            inner, tunnel = pl, ("ipip", 0)
        if inner is None or len(inner) < 20 or inner[0] >> 4 not in (4, 6):
            break
        ip = inner
    return ip, tunnel


def _packets(path: str) -> Iterator[tuple[float, int, bytes]]:
    """(ts, linktype, frame) for every frame of a pcap or pcapng file."""
    import dpkt

    with open(path, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic == b"\x0a\x0d\x0d\x0a":
            rd = dpkt.pcapng.Reader(fh)
        else:
            rd = dpkt.pcap.Reader(fh)
        lt = rd.datalink()
        it = iter(rd)
        while True:
            try:
                ts, buf = next(it)
            except StopIteration:
                return
            except (dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, ValueError, struct.error):
                return  # truncated or corrupt file: keep what was read
            yield float(ts), lt, buf


def classify_capture(path: str, *, max_packets: int = 8, snaplen: int = SNAPLEN,
                     classifier: Classifier | None = None) -> list[FlowRecord]:
    """Classify every flow of a capture; one record per flow in first-seen order."""
    clf = classifier if classifier is not None else Classifier(max_packets=max_packets)
    recs: dict[tuple, FlowRecord] = {}
    fed: dict[tuple, int] = {}
    keys: dict[tuple, tuple] = {}
    frag_owner: dict[tuple, tuple] = {}
    labels: dict[tuple, object] = {}
    unfed: dict[tuple, Packet] = {}  # flows with only bare TCP segments so far: the last one

    for ts, lt, frame in _packets(path):
        try:
            ip = link_to_ip(lt, frame)
            if ip is None:
                continue
            ip, tunnel = decapsulate(ip)
            p = parse_ip(ip)
            if p is None:
                continue
            if p.later_fragment:
                owner = frag_owner.get((p.src, p.dst, p.proto, p.ip_id))
                if owner is not None:
                    r = recs[owner]
                    r.packets += 1
                    r.bytes += _wire_len(ip)
                continue
            canon = p.canonical(tunnel)
            if p.more_fragments:
                frag_owner[(p.src, p.dst, p.proto, p.ip_id)] = canon
            r = recs.get(canon)
            wl = _wire_len(ip)
            if r is None:
                r = FlowRecord(p.l4, p.src, p.sport, p.dst, p.dport, "unknown", "unknown",
                               0.0, "no-match", "none", 0, 0, tunnel)
                recs[canon] = r
                fed[canon] = 0
                keys[canon] = canon
            r.packets += 1
            r.bytes += wl
            seq = fed[canon]
            if seq < max_packets:
                fed[canon] = seq + 1
                d = 0 if p.sport == r.sport and p.src == r.src else 1
                pkt = Packet(ts, ip[:snaplen], wl, tunnel, seq, d)
                if not sampled(p, seq, max_packets):  # as the data path: counted, not fed
                    if seq == 0 or canon in unfed:
                        unfed[canon] = pkt
                    continue
                unfed.pop(canon, None)
                lab = clf.feed(pkt)
                if lab is not None:
                    labels[canon] = lab
        except (IndexError, ValueError, struct.error):
            continue  # malformed packet: skip it
    # The capture is over: every flow is decided, also one that sent nothing to classify
    # (its last bare TCP segment lets the classifier's fallback, e.g. the port, label it).
    for pkt in unfed.values():
        clf.feed(pkt)
    for key, lab in clf.flush():
        labels.setdefault(canonical(key.l4, key.src, key.sport, key.dst, key.dport,
                                    key.tunnel), lab)
    for canon, r in recs.items():
        lab = labels.get(canon)
        if lab is not None:
            r.app, r.category, r.confidence = lab.app, lab.category, lab.confidence
            r.reason, r.call = lab.reason, lab.call
    return list(recs.values())


def _wire_len(ip: bytes) -> int:
    if len(ip) >= 20 and ip[0] >> 4 == 4:
        return struct.unpack_from("!H", ip, 2)[0] or len(ip)
    if len(ip) >= 40 and ip[0] >> 4 == 6:
        return 40 + struct.unpack_from("!H", ip, 4)[0]
    return len(ip)


def _print_table(recs: list[FlowRecord], out: IO[str]) -> None:
    rows = [[str(r.as_dict()[f]) for f in FIELDS] + [r.call] for r in recs]
    head = list(FIELDS) + ["call"]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    out.write("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def main_classify(capture: str, fmt: str = "table", max_packets: int = 8,
                  out: IO[str] = sys.stdout) -> int:
    """Print one line per flow of ``capture``; return a process exit code."""
    try:
        recs = classify_capture(capture, max_packets=max_packets)
    except OSError as e:
        print(f"couldn't read capture {capture}: {e.strerror or e}; check the path",
              file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - an unreadable file format, reported by name
        print(f"couldn't parse capture {capture}: {e}; is it pcap or pcapng?", file=sys.stderr)
        return 2
    if fmt == "jsonl":
        for r in recs:
            out.write(json.dumps(r.as_dict()) + "\n")
    else:
        _print_table(recs, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m xdpgate.control.classify.offline",
        description="Label every flow of a pcap/pcapng capture with app and category.",
        epilog="examples:\n  %(prog)s call.pcap\n  %(prog)s --format jsonl call.pcapng",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--format", choices=("table", "jsonl"), default="table")
    ap.add_argument("--max-packets", type=int, default=8)
    a = ap.parse_args(argv)
    return main_classify(a.capture, a.format, a.max_packets)


if __name__ == "__main__":
    sys.exit(main())
