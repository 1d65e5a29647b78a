"""DNS, mDNS, LLMNR and DNSCrypt certificate queries; answers teach HostKnowledge.

A DNS message is recognised by its structure (header counts, a well-formed question), on any
port; the port only picks the flavour (5353 mDNS, 5355 LLMNR).  DNS *about* any app is still
``dns``.
"""

from __future__ import annotations

import re
import socket
import struct

from .base import GIVE_UP, Flow, Label, Spec

SPEC = Spec("dns", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=2, priority=10)

PORT_FLAVOUR = {53: "dns", 5353: "mdns", 5355: "llmnr", 853: "doh-dot"}
VALID_OPCODES = {0, 1, 2, 4, 5}
DNSCRYPT_CERT_LABEL = b"dnscrypt-cert"
TYPE_A, TYPE_AAAA = 1, 28


def _name(buf: bytes, off: int, depth: int = 0) -> tuple[bytes, int]:
    """(dotted name, offset after it) of a (possibly compressed) DNS name; ValueError if bad."""
    labels = []
    end = -1
    total = 0
    for _ in range(128):
        if off >= len(buf):
            raise ValueError("name runs past the message")
        n = buf[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(buf) or depth > 8:
                raise ValueError("bad pointer")
            ptr = ((n & 0x3F) << 8) | buf[off + 1]
            if end < 0:
                end = off + 2
            if ptr >= off:
                raise ValueError("forward pointer")
            rest, _ = _name(buf, ptr, depth + 1)
            if rest:
                labels.append(rest)
            off = -1
            break
        if n > 63:
            raise ValueError("label too long")
        lab = buf[off + 1 : off + 1 + n]
        if len(lab) != n:
            raise ValueError("short label")
        labels.append(lab)
        total += n + 1
        off += n + 1
    else:
        raise ValueError("too many labels")
    if total > 255:
        raise ValueError("name too long")
    return b".".join(labels), (end if end >= 0 else off)


_memo: list = [None, None]  # the last message parsed and its result (match, then learn)
_NOT_PRINTABLE = re.compile(rb"[^\x21-\x7e]")


def parse_message(msg: bytes) -> tuple[int, bytes, int, int] | None:
    """(flags, first question name, qtype, offset after the question) or None if not DNS.

    ValueError if the question name is malformed.  The last result is memoised by message
    identity: the engine gives the same payload to match() and learn().
    """
    if _memo[0] is msg:
        r = _memo[1]
        if r is ValueError:
            raise ValueError("bad question name")
        return r
    try:
        r = _parse_message(msg)
    except ValueError:
        _memo[0], _memo[1] = msg, ValueError
        raise
    _memo[0], _memo[1] = msg, r
    return r


def _parse_message(msg: bytes) -> tuple[int, bytes, int, int] | None:
    if len(msg) < 12:
        return None
    _tid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
    opcode = (flags >> 11) & 0xF
    if opcode not in VALID_OPCODES or flags & 0x0040:  # Z bit must be zero
        return None
    qr = flags >> 15
    if qd == 0 and not (qr and an):
        return None
    if qd > 4 or an > 200 or ns > 200 or ar > 200:
        return None
    if not qr and an > 0 and opcode == 0:
        return None
    if qd == 0:
        return flags, b"", 0, 12
    name, off = _name(msg, 12)
    if off + 4 > len(msg):
        if len(msg) >= off:  # truncated sample: the question name is enough
            return flags, name, 0, len(msg)
        return None
    qtype, qclass = struct.unpack_from("!HH", msg, off)
    if (qclass & 0x7FFF) not in (1, 3, 4, 255) or qtype == 0:
        return None
    return flags, name, qtype, off + 4


def _printable(name: bytes) -> bool:
    return _NOT_PRINTABLE.search(name) is None


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    tcp = flow.l4 == "tcp"
    if tcp:
        if len(pl) < 14 or struct.unpack_from("!H", pl, 0)[0] < 12:
            return GIVE_UP
        pl = pl[2:]
    r = parse_message(pl)
    if r is None or not _printable(r[1]):
        return GIVE_UP
    flags, name, qtype, _ = r
    lname = name.lower()
    ports = flow.ports()
    flavour = next((PORT_FLAVOUR[p] for p in (ports[1], ports[0]) if p in PORT_FLAVOUR), None)
    if DNSCRYPT_CERT_LABEL in lname:
        return Label("dnscrypt", "dns", 0.9, "dnscrypt-cert-query")
    if flavour in ("mdns", "llmnr"):
        return Label(flavour, "dns", 0.9, f"{flavour}-message")
    if flavour == "dns" or flavour is None and not tcp:
        conf = 0.9 if flavour else 0.6
        if flavour is None and (not name or "." not in name.decode("ascii", "replace")):
            return GIVE_UP  # a bare header on a random port is too weak
        return Label("dns", "dns", conf, "dns-message" if flavour else "dns-structure")
    if tcp and flavour is None:
        return Label("dns", "dns", 0.55, "dns-over-tcp")
    return GIVE_UP


def learn(flow: Flow, sample, ctx) -> None:
    """Tie the addresses in DNS answers to the question name."""
    if not sample.payload:
        return
    pl = sample.payload[2:] if flow.l4 == "tcp" else sample.payload
    try:
        learn_answers(pl, ctx.knowledge)
    except (ValueError, IndexError, struct.error):
        pass


def learn_answers(msg: bytes, knowledge) -> None:
    r = parse_message(msg)
    if r is None or not (r[0] >> 15):
        return
    _flags, qname, _qtype, off = r
    an = struct.unpack_from("!H", msg, 6)[0]
    name = qname.decode("ascii", "replace")
    for _ in range(min(an, 64)):
        _rname, off = _name(msg, off)
        if off + 10 > len(msg):
            return
        rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
        off += 10
        rdata = msg[off : off + rdlen]
        if len(rdata) != rdlen:
            return
        if rtype == TYPE_A and rdlen == 4:
            knowledge.learn_name(socket.inet_ntop(socket.AF_INET, rdata), name)
        elif rtype == TYPE_AAAA and rdlen == 16:
            knowledge.learn_name(socket.inet_ntop(socket.AF_INET6, rdata), name)
        off += rdlen
