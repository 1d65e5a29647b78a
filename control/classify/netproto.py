"""Network-infrastructure, mail, remote-access and other well-known protocols.

Each entry is (app, l4, ports, check): ``check(payload)`` must hold on the first payload packet
of either direction; the port set narrows where a short or generic check is tried (``None``:
any port, so the check must be specific).  ICMP/IGMP and other IP protocols go by number.
"""

from __future__ import annotations

import struct

from .base import Flow, GIVE_UP, Label, PortRows, Spec, app_label

SPEC = Spec("netproto", frozenset({"udp", "tcp", "icmp", "other"}), needs_payload=False,
            max_packets=3, priority=5)

# IP protocol number -> app for flows that are neither TCP nor UDP
IP_PROTO_APPS = {1: "icmp", 58: "icmp6", 2: "igmp", 89: "ospf", 112: "vrrp", 47: "gre",
                 50: "ipsec", 51: "ipsec", 132: "sctp", 103: "ip-pim", 4: "ip-in-ip",
                 41: "ip-in-ip", 8: "egp"}


def _dhcp(p: bytes) -> bool:
    return len(p) >= 240 and p[0] in (1, 2) and p[236:240] == b"\x63\x82\x53\x63"


def _dhcp6(p: bytes) -> bool:
    return len(p) >= 4 and 1 <= p[0] <= 13


def _ntp(p: bytes) -> bool:
    return len(p) >= 48 and 1 <= (p[0] >> 3) & 7 <= 4 and 1 <= p[0] & 7 <= 5


def _snmp(p: bytes) -> bool:
    return len(p) >= 10 and p[0] == 0x30 and b"\x02\x01" in p[1:8]


def _syslog(p: bytes) -> bool:
    if len(p) < 4 or p[:1] != b"<":
        return False
    j = p.find(b">", 1, 5)
    return j > 1 and p[1:j].isdigit()


def _radius(p: bytes) -> bool:
    return (len(p) >= 20 and p[0] in (1, 2, 3, 4, 5, 11, 12, 13, 40, 41, 42, 43, 44, 45)
            and struct.unpack_from("!H", p, 2)[0] == len(p))


def _kerberos(p: bytes) -> bool:
    q = p[4:] if len(p) > 8 and struct.unpack_from("!I", p, 0)[0] == len(p) - 4 else p
    return len(q) >= 4 and q[0] in (0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x7E) and q[1] & 0x80


def _netbios_ns(p: bytes) -> bool:
    return len(p) >= 12 and (struct.unpack_from("!H", p, 2)[0] >> 11) & 0xF in (0, 5, 6, 7, 8)


def _netbios_dgm(p: bytes) -> bool:
    return len(p) >= 14 and 0x10 <= p[0] <= 0x16


def _nbss(p: bytes) -> bool:
    return len(p) >= 4 and p[0] in (0x00, 0x81, 0x82, 0x83, 0x85) and p[1] in (0, 1)


def _smb(p: bytes) -> str | None:
    if len(p) >= 8 and p[0] == 0 and p[4:8] == b"\xffSMB":
        return "smbv1"
    if len(p) >= 8 and p[0] == 0 and p[4:8] in (b"\xfeSMB", b"\xfdSMB"):
        return "smbv23"
    return None


def _tftp(p: bytes) -> bool:
    if len(p) < 4 or p[0] != 0:
        return False
    if p[1] in (1, 2):
        low = p.lower()
        return b"\x00octet\x00" in low or b"\x00netascii\x00" in low or b"\x00mail\x00" in low
    return p[1] in (3, 4, 5, 6) and len(p) <= 1472


def _bgp(p: bytes) -> bool:
    return len(p) >= 19 and p[:16] == b"\xff" * 16


def _ssh(p: bytes) -> bool:
    return p.startswith(b"SSH-") and p[4:5].isdigit()


def _rdp(p: bytes) -> bool:
    return (len(p) >= 11 and p[0] == 3 and p[1] == 0 and p[5] in (0xE0, 0xD0)) or \
        b"Cookie: mstshash=" in p[:64]


def _text(*prefixes: bytes):
    return lambda p: any(p.startswith(x) for x in prefixes)


def _mysql(p: bytes) -> bool:
    return (len(p) > 10 and struct.unpack_from("<I", p[:3] + b"\x00")[0] == len(p) - 4
            and p[3] == 0 and p[4] == 10)


def _mongodb(p: bytes) -> bool:
    return (len(p) >= 16 and struct.unpack_from("<i", p, 0)[0] == len(p)
            and struct.unpack_from("<i", p, 12)[0] in (1, 1000, 2001, 2002, 2004, 2010, 2013))


def _mssql(p: bytes) -> bool:
    return len(p) >= 8 and p[0] in (0x01, 0x02, 0x03, 0x04, 0x07, 0x0E, 0x10, 0x11, 0x12) and \
        p[1] in (0, 1) and struct.unpack_from("!H", p, 2)[0] == len(p)


def _mqtt(p: bytes) -> bool:
    return len(p) >= 10 and p[0] == 0x10 and (p[4:8] == b"MQTT" or p[4:10] == b"MQIsdp")


def _coap(p: bytes) -> bool:
    return len(p) >= 4 and p[0] >> 6 == 1 and (p[0] & 0x0F) <= 8 and \
        (p[1] in (0, 1, 2, 3, 4) or 65 <= p[1] <= 165)


def _ssdp_any(p: bytes) -> bool:
    return p.startswith((b"M-SEARCH", b"NOTIFY", b"HTTP/1.1 200"))


def _wsd(p: bytes) -> bool:
    return p.startswith(b"<?xml") and b"soap" in p[:400].lower()


def _nat_pmp(p: bytes) -> bool:
    return len(p) >= 2 and p[0] in (0, 2) and (p[1] in (0, 1, 2) or p[1] >= 128)


def _collectd(p: bytes) -> bool:
    return len(p) >= 8 and p[0] == 0 and p[1] in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)


def _bfd(p: bytes) -> bool:
    return len(p) >= 24 and p[0] >> 5 == 1 and p[3] in (24, 48) and p[3] <= len(p)


def _hsrp(p: bytes) -> bool:
    return len(p) >= 20 and p[0] in (0, 1, 2)


def _ldap(p: bytes) -> bool:
    return len(p) >= 7 and p[0] == 0x30 and p[2 if p[1] < 0x80 else 2 + (p[1] & 0x7F)] == 0x02


def _any(p: bytes) -> bool:
    return len(p) > 0


# (app, l4, ports or None, check, confidence)
TABLE: tuple = (
    ("dhcp", "udp", {67, 68}, _dhcp, 0.95),
    ("dhcp6", "udp", {546, 547}, _dhcp6, 0.85),
    ("ntp", "udp", {123}, _ntp, 0.85),
    ("snmp", "udp", {161, 162}, _snmp, 0.9),
    ("syslog", "udp", {514}, _syslog, 0.9),
    ("syslog", "tcp", {514, 601, 6514}, _syslog, 0.8),
    ("radius", "udp", {1812, 1813, 1645, 1646, 3799}, _radius, 0.9),
    ("kerberos", "udp", {88}, _kerberos, 0.9),
    ("kerberos", "tcp", {88}, _kerberos, 0.9),
    ("netbios", "udp", {137}, _netbios_ns, 0.85),
    ("netbios", "udp", {138}, _netbios_dgm, 0.85),
    ("netbios", "tcp", {139}, _nbss, 0.8),
    ("tftp", "udp", {69}, _tftp, 0.85),
    ("bgp", "tcp", {179}, _bgp, 0.95),
    ("ssh", "tcp", None, _ssh, 0.95),
    ("rdp", "tcp", {3389}, _rdp, 0.9),
    ("ftp", "tcp", {21}, _text(b"220", b"USER ", b"AUTH "), 0.9),
    ("smtp", "tcp", {25, 587, 2525}, _text(b"220", b"EHLO ", b"HELO "), 0.9),
    ("pop3", "tcp", {110}, _text(b"+OK", b"USER ", b"CAPA"), 0.9),
    ("imap", "tcp", {143}, _text(b"* OK", b"* PREAUTH", b"a001 ", b"A001 "), 0.9),
    ("mysql", "tcp", None, _mysql, 0.7),
    ("mongodb", "tcp", None, _mongodb, 0.8),
    ("mssql", "tcp", {1433}, _mssql, 0.85),
    ("mqtt", "tcp", None, _mqtt, 0.9),
    ("coap", "udp", {5683, 5684}, _coap, 0.8),
    ("ssdp", "udp", {1900}, _ssdp_any, 0.85),
    ("wsd", "udp", {3702}, _wsd, 0.85),
    ("nat-pmp", "udp", {5351}, _nat_pmp, 0.7),
    ("collectd", "udp", {25826}, _collectd, 0.7),
    ("bfd", "udp", {3784, 3785, 4784}, _bfd, 0.85),
    # BFD echo (3785) is looped back by the peer's forwarding plane: any content, own port
    ("bfd", "udp", {3785}, lambda p: 8 <= len(p) <= 64, 0.6),
    ("hsrp", "udp", {1985, 2029}, _hsrp, 0.7),
    ("ldap", "tcp", {389, 3268}, _ldap, 0.85),
    ("ldap", "udp", {389}, _ldap, 0.85),
    ("slp", "udp", {427}, lambda p: len(p) >= 14 and p[0] in (1, 2) and 1 <= p[1] <= 11, 0.7),
    ("telnet", "tcp", {23}, lambda p: p[:1] == b"\xff", 0.8),
    ("vnc", "tcp", None, lambda p: p.startswith(b"RFB 00"), 0.9),
    ("capwap", "udp", {5246, 5247}, lambda p: len(p) >= 8 and p[0] >> 4 == 0, 0.7),
    ("sflow", "udp", {6343}, lambda p: len(p) >= 28 and p[:4] in (b"\0\0\0\x05", b"\0\0\0\x02"),
     0.8),
    ("netflow", "udp", {2055, 9995, 9996}, lambda p: len(p) >= 20 and p[:2] in (
        b"\0\x05", b"\0\x09", b"\0\x0a", b"\0\x01", b"\0\x07"), 0.8),
    # memcached's UDP frame header: request id, sequence, datagram count, reserved zero
    ("memcached", "udp", {11211}, lambda p: len(p) >= 8 and p[6:8] == b"\0\0", 0.6),
    ("ipp", "tcp", {631}, _text(b"POST /", b"GET /"), 0.6),
    ("amqp", "tcp", {5672}, _text(b"AMQP"), 0.9),
    ("postgresql", "tcp", {5432}, lambda p: len(p) >= 8 and p[4:8] in (
        b"\x00\x03\x00\x00", b"\x04\xd2\x16\x2f"), 0.85),
    ("resp", "tcp", {6379}, _text(b"*1\r\n", b"*2\r\n", b"*3\r\n", b"+PONG", b"PING"), 0.8),
)

_BY_L4: dict[str, list] = {"udp": [], "tcp": []}
for _row in TABLE:
    _BY_L4[_row[1]].append(_row)


# the rows a flow's ports can match, in table order
_TABLE = PortRows(_BY_L4)
_rows = _TABLE.rows


def match(flow: Flow, ctx) -> Label | None:
    l4 = flow.l4
    if l4 in ("icmp", "other"):
        return by_proto(flow.proto, l4)
    pl = flow.last.payload
    if not pl:
        return None
    ports = flow.ports()
    hit = _TABLE.first(l4, ports, pl)
    if hit is not None:
        return app_label(hit[0], f"{hit[0]}-header", hit[1], l4=l4)
    if l4 == "tcp" and (139 in ports or 445 in ports):
        v = _smb(pl)
        if v:
            return app_label(v, "smb-header", 0.9)
    if flow.npayload >= 2:
        return GIVE_UP
    return None


def by_proto(proto: int, l4: str) -> Label:
    app = IP_PROTO_APPS.get(proto, "unknown")
    if app == "unknown":
        return Label("unknown", "unknown", 0.0, "ip-proto")
    return app_label(app, f"ip-proto:{proto}", 0.9, l4=l4)
