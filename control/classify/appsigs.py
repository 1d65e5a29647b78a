"""Application, device and game protocols recognised by a fixed binary or text header.

Each entry is (app, l4s, ports or None, check): ``check(payload)`` must hold on one of the first
payload packets of the flow, in either direction.  A port set narrows where a short check is
tried (the protocol's registered or documented default ports); ``None`` means any port, so the
check must be specific (a magic number plus a length field that must agree with the packet).
"""

from __future__ import annotations

import struct

from .base import Flow, GIVE_UP, Label, PortRows, Spec, app_label
from .packet import MAY_BE_CUT

SPEC = Spec("appsigs", frozenset({"udp", "tcp"}), needs_payload=True, max_packets=4,
            priority=46)

_U32 = struct.Struct("!I")


def _eaq(p: bytes) -> bool:
    # EAQ (Brazilian broadband quality probe): 16-byte echo, 32-bit sequence number first
    return len(p) == 16 and p[:2] == b"\0\0" and p[12:14] == b"\0\0" and p[15] == 0


def _alicloud(p: bytes) -> bool:
    # AliCloud/Aliyun IoT & client long-link: 0xBABEFACE little-endian magic
    return len(p) >= 8 and p[:4] == b"\xce\xfa\xbe\xba"


def _fix(p: bytes) -> bool:
    # FIX: tag=value fields separated by SOH, always BeginString (8), BodyLength (9), MsgType (35)
    if not p.startswith(b"8="):
        return False
    i = p.find(b"\x019=", 2, 24)
    return i > 0 and p.find(b"\x0135=", i, i + 24) > 0


def _tuya(p: bytes) -> bool:
    # Tuya local protocol: 0x000055AA prefix, 0x0000AA55 suffix, length field at 12
    return (len(p) >= 24 and p[:4] == b"\x00\x00\x55\xaa" and p[-4:] == b"\x00\x00\xaa\x55"
            and _U32.unpack_from(p, 12)[0] == len(p) - 16)


def _avast(p: bytes) -> bool:
    # Avast client: "NOSA" + big-endian message length
    return len(p) >= 8 and p[:4] == b"NOSA" and struct.unpack_from("!H", p, 4)[0] == len(p)


def _dnscrypt(p: bytes) -> bool:
    # DNSCrypt v2: every resolver response starts with the fixed resolver magic
    return p.startswith(b"r6fnvWj8")


# ONC RPC programs: portmapper, NFS, mountd, NLM, NSM status, NFS ACL
_RPC_NFS_PROGRAMS = frozenset({100000, 100003, 100005, 100021, 100024, 100227})


def _onc_rpc_nfs(p: bytes) -> bool:
    q = p
    if len(q) >= 28 and q[0] & 0x80 and (_U32.unpack_from(q, 0)[0] & 0x7FFFFFFF) == len(q) - 4:
        q = q[4:]  # TCP record marker (last fragment)
    if len(q) < 24:
        return False
    mtype, rpcvers, prog = struct.unpack_from("!III", q, 4)
    return mtype == 0 and rpcvers == 2 and prog in _RPC_NFS_PROGRAMS


def _bjnp(p: bytes) -> bool:
    # Canon BJNP printer/scanner discovery
    return len(p) >= 16 and p[:4] in (b"BJNP", b"BJNB", b"MFNP", b"MFNB") and \
        p[4] in (0x01, 0x02, 0x81, 0x82)


def _hp_virtgrp(p: bytes) -> bool:
    # HP Virtual Group: 0x16 0x00 then little-endian total length (not TLS: TLS has 0x16 0x03)
    return len(p) >= 32 and p[0] == 0x16 and p[1] == 0 and \
        struct.unpack_from("<H", p, 2)[0] == len(p)


def _tplink_shp(p: bytes) -> bool:
    # TP-Link smart home: JSON "encrypted" with an autokey XOR starting at 171; TCP adds a
    # 4-byte length prefix
    if len(p) >= 8 and _U32.unpack_from(p, 0)[0] == len(p) - 4:
        p = p[4:]
    if len(p) < 8:
        return False
    key, out = 171, bytearray()
    for c in p[:256]:
        out.append(key ^ c)
        key = c
    if not out.startswith(b'{"'):
        return False
    if len(p) <= 256 and not out.rstrip().endswith(b"}"):
        return False
    return all(32 <= c < 127 for c in out)


def _elasticsearch(p: bytes) -> bool:
    # Elasticsearch transport protocol: "ES" + big-endian length of the rest
    return len(p) >= 6 and p[:2] == b"ES" and _U32.unpack_from(p, 2)[0] == len(p) - 6


def _kcp(p: bytes) -> bool:
    # KCP segments (24-byte header: conv, cmd 81-84, frg, wnd, ts, sn, una, len), possibly
    # several in one datagram; they must fill it exactly and share the conversation id
    if len(p) < 24:
        return False
    conv = p[:4]
    off = 0
    while off < len(p):
        if len(p) - off < 24 or p[off:off + 4] != conv or not 81 <= p[off + 4] <= 84:
            return False
        n = struct.unpack_from("<I", p, off + 20)[0]
        if p[off + 4] != 81 and n:
            return False  # only push segments carry data
        off += 24 + n
    return off == len(p) or (off > len(p) >= MAY_BE_CUT)  # the sample may be cut


def _nintendo(p: bytes) -> bool:
    # Nintendo Switch online (NEX/PIA) datagram magic
    return len(p) >= 12 and p[:4] == b"\x32\xab\x98\x64"


def _photon(p: bytes) -> bool:
    # Exit Games Photon (used by many mobile games): 12-byte header with a command count, then
    # that many commands (type 1-12, 12-byte header, big-endian length) filling the datagram
    if len(p) < 24:
        return False
    count = p[3]
    if not 1 <= count <= 32:
        return False
    off = 12
    for _ in range(count):
        if len(p) - off < 12 or not 1 <= p[off] <= 12:
            return False
        n = _U32.unpack_from(p, off + 4)[0]
        if n < 12:
            return False
        off += n
    return off == len(p)


def _socks(p: bytes) -> bool:
    # SOCKS5 greeting (version, n methods, methods) or SOCKS4/4a CONNECT/BIND request
    if len(p) >= 3 and p[0] == 5 and len(p) == 2 + p[1] and p[1] >= 1:
        return all(m <= 9 or 0x80 <= m <= 0xFE for m in p[2:])
    return len(p) >= 9 and p[0] == 4 and p[1] in (1, 2) and p[-1] == 0


def _dropbox_lansync(p: bytes) -> bool:
    # Dropbox LAN sync discovery: a JSON broadcast announcing host_int, version and port
    return p[:1] == b"{" and b'"host_int"' in p[:200] and b'"version"' in p


def _xiaomi(p: bytes) -> bool:
    # Xiaomi push channel: 0xC2FE magic, version 5, big-endian body length + 12-byte header
    return len(p) >= 16 and p[:4] == b"\xc2\xfe\x00\x05" and \
        _U32.unpack_from(p, 4)[0] + 12 == len(p)


def _zug(p: bytes) -> bool:
    # ZUG (Zoom's p2p CDN transport): "\0zUG" magic
    return len(p) >= 16 and p[:4] == b"\x00zUG"


def _levin(p: bytes) -> bool:
    # Levin, the CryptoNote (Monero) p2p framing: 8-byte signature, LE body size, flags
    return len(p) >= 33 and p[:8] == b"\x01\x21\x01\x01\x01\x01\x01\x01"


def _munin(p: bytes) -> bool:
    return p.startswith(b"# munin node at ")


def _roughtime(p: bytes) -> bool:
    # Roughtime: "ROUGHTIM" framing (IETF drafts) or a bare tagged message: LE tag count,
    # offsets, then four-letter tags among which NONC (request) or SREP/SIG (response)
    if p.startswith(b"ROUGHTIM"):
        return True
    if len(p) < 16:
        return False
    n = struct.unpack_from("<I", p, 0)[0]
    if not 1 <= n <= 16 or len(p) < 8 * n:
        return False
    tags = p[4 * n:8 * n]
    return any(tags[i:i + 4] in (b"NONC", b"SREP", b"SIG\x00") for i in range(0, 4 * n, 4))


def _tftp_data(p: bytes) -> bool:
    # TFTP transfers run on ephemeral ports: a full DATA block (opcode 3, 512 bytes of data)
    return len(p) == 516 and p[:2] == b"\x00\x03" and int.from_bytes(p[2:4], "big") >= 1


def _cql(p: bytes) -> bool:
    # Cassandra native protocol v3-v5: version (| 0x80 on responses), flags, stream, opcode,
    # big-endian body length equal to the rest
    return (len(p) >= 9 and p[0] & 0x7F in (3, 4, 5) and p[1] <= 0x1F and p[4] <= 0x10
            and _U32.unpack_from(p, 5)[0] == len(p) - 9)


def _mqtt_packet(p: bytes) -> bool:
    # any MQTT control packet: type 1-14 and a remaining-length varint that fits exactly
    if len(p) < 2 or not 1 <= p[0] >> 4 <= 14:
        return False
    n, mul, i = 0, 1, 1
    while i < len(p) and i <= 4:
        n += (p[i] & 0x7F) * mul
        mul *= 128
        if not p[i] & 0x80:
            return n == len(p) - i - 1
        i += 1
    return False


def _hart_ip(p: bytes) -> bool:
    # HART-IP: version 1, message type 0-3, message id 0-3, status, sequence, byte count
    return (len(p) >= 8 and p[0] == 1 and p[1] <= 3 and p[2] <= 3
            and struct.unpack_from("!H", p, 6)[0] == len(p))


_TRDP_TYPES = frozenset({b"Pd", b"Pp", b"Pr", b"Pe", b"Mn", b"Mr", b"Mp", b"Mq", b"Mc", b"Me"})


def _trdp(p: bytes) -> bool:
    # IEC 61375 TRDP: sequence counter, protocol version 1.x, two-letter message type
    return len(p) >= 40 and p[4] == 1 and p[6:8] in _TRDP_TYPES


_RAKNET_MAGIC = b"\x00\xff\xff\x00\xfe\xfe\xfe\xfe\xfd\xfd\xfd\xfd\x12\x34\x56\x78"


def _raknet(p: bytes) -> bool:
    # RakNet offline messages carry a fixed 16-byte magic near the start
    return 0 <= p.find(_RAKNET_MAGIC, 1, 64)


def _rsh(p: bytes) -> bool:
    # rsh/rlogin: the client first sends its stderr port (decimal, NUL-terminated), or
    # local user, remote user and command as NUL-terminated strings
    if len(p) <= 6 and p.endswith(b"\x00") and p[:-1].isdigit():
        return True
    parts = p.split(b"\x00")
    return len(parts) == 4 and parts[3] == b"" and all(x and x.isascii() for x in parts[:3])


def _thrift(p: bytes) -> bool:
    # Apache Thrift strict binary protocol (optionally framed): 0x8001, message type 1-4,
    # method-name length and a printable name
    if len(p) >= 12 and _U32.unpack_from(p, 0)[0] == len(p) - 4 and p[4:6] == b"\x80\x01":
        p = p[4:]
    if len(p) < 9 or p[:2] != b"\x80\x01" or p[2] != 0 or not 1 <= p[3] <= 4:
        return False
    n = _U32.unpack_from(p, 4)[0]
    name = p[8:8 + n]
    return 1 <= n <= 256 and len(name) == n and all(33 <= c < 127 for c in name)


def _knxnet_ip(p: bytes) -> bool:
    # KNXnet/IP: header length 6, version 1.0, service type, total length
    return (len(p) >= 6 and p[0] == 6 and p[1] == 0x10
            and struct.unpack_from("!H", p, 4)[0] == len(p))


def _dlms_hdlc(p: bytes) -> bool:
    # IEC 62056-46 (DLMS/COSEM) HDLC frame: 0x7E flags, type-3 frame format, 11-bit length
    return (len(p) >= 9 and p[0] == 0x7E and p[-1] == 0x7E and p[1] >> 4 == 0xA
            and ((p[1] & 0x07) << 8 | p[2]) == len(p) - 2)


def _c37118(p: bytes) -> bool:
    # IEEE C37.118 synchrophasor: SYNC 0xAA, frame type 0-5, version 1-3, frame size
    return (len(p) >= 16 and p[0] == 0xAA and p[1] >> 4 <= 5 and 1 <= p[1] & 0x0F <= 3
            and struct.unpack_from("!H", p, 2)[0] == len(p))


def _atg(p: bytes) -> bool:
    # Veeder-Root automatic tank gauge serial commands over TCP: SOH, function code, digits
    return (len(p) >= 7 and p[0] == 0x01 and p[1:2] in (b"I", b"i", b"S", b"s")
            and p[2:7].isdigit())


def _ldap_any(p: bytes) -> bool:
    # an LDAPMessage with short-form lengths that add up exactly: SEQUENCE, messageID INTEGER,
    # then an application-class protocol operation
    if len(p) < 7 or p[0] != 0x30 or p[1] >= 0x80 or p[1] != len(p) - 2 or p[2] != 2:
        return False
    n = p[3]
    if not 1 <= n <= 4 or len(p) <= 4 + n:
        return False
    op = p[4 + n]
    return 0x60 <= op <= 0x79 or op in (0x42, 0x4A, 0x50)


def _diameter(p: bytes) -> bool:
    # Diameter: version 1, 24-bit message length, flags with the reserved bits clear
    return len(p) >= 20 and p[0] == 1 and int.from_bytes(p[1:4], "big") == len(p) and \
        p[4] & 0x0F == 0


def _edonkey(p: bytes) -> bool:
    # eDonkey/eMule TCP: protocol byte (eDonkey, eMule, packed), LE length of the rest
    return len(p) >= 6 and p[0] in (0xE3, 0xC5, 0xD4) and \
        struct.unpack_from("<I", p, 1)[0] == len(p) - 5


def _fastcgi(p: bytes) -> bool:
    # FastCGI BEGIN_REQUEST record: version 1, type 1, 8-byte body, reserved 0
    return len(p) >= 16 and p[0] == 1 and p[1] == 1 and p[4:6] == b"\x00\x08" and p[7] == 0


def _irc(p: bytes) -> bool:
    return p.startswith((b"NICK ", b"USER ", b"CAP LS", b"PASS ")) and p.endswith(b"\n") and \
        all(32 <= c < 127 or c in (10, 13) for c in p[:128])


def _mpegts(p: bytes) -> bool:
    # MPEG transport stream over UDP: whole 188-byte packets, each with the 0x47 sync byte and
    # no transport error; two packets or more (one sync byte alone is 1 in 256 of anything)
    return len(p) >= 376 and len(p) % 188 == 0 and all(
        p[i] == 0x47 and not p[i + 1] & 0x80 for i in range(0, len(p), 188))


def _mpegts_one(p: bytes) -> bool:
    # a single TS packet: sync byte, no transport error, a valid adaptation field control
    return len(p) == 188 and p[0] == 0x47 and not p[1] & 0x80 and p[3] & 0x30 != 0


def _openflow(p: bytes) -> bool:
    return (len(p) >= 8 and 1 <= p[0] <= 6 and p[1] <= 35
            and struct.unpack_from("!H", p, 2)[0] == len(p))


def _postgres_startup(p: bytes) -> bool:
    # PostgreSQL StartupMessage (protocol 3.0), SSLRequest or GSSENCRequest
    return (len(p) >= 8 and _U32.unpack_from(p, 0)[0] == len(p)
            and p[4:8] in (b"\x00\x03\x00\x00", b"\x04\xd2\x16\x2f", b"\x04\xd2\x16\x30"))


def _iso_tsap(p: bytes) -> str | None:
    # TPKT + COTP data on ISO-TSAP (102): the first byte of the user data names the protocol
    if len(p) < 8 or p[:2] != b"\x03\x00" or struct.unpack_from("!H", p, 2)[0] != len(p):
        return None
    if p[5] != 0xF0:
        return None
    return {0x32: "s7comm", 0x72: "s7commplus"}.get(p[7], "iso9506-1-mms")


_SMPP_COMMANDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0B, 0x15, 0x21, 0x102, 0x103, 0x111,
                            0x112, 0x113})


def _smpp(p: bytes) -> bool:
    return (len(p) >= 16 and _U32.unpack_from(p, 0)[0] == len(p)
            and _U32.unpack_from(p, 4)[0] & 0x7FFFFFFF in _SMPP_COMMANDS
            and _U32.unpack_from(p, 8)[0] < 0x100)


def _teamviewer(p: bytes) -> bool:
    # TeamViewer UDP: zero first byte, then the 0x17 / 0x24 marker bytes at 11 and 13
    return len(p) >= 14 and p[0] == 0 and p[11] == 0x17 and p[13] == 0x24


def _pfcp(p: bytes) -> bool:
    # 3GPP PFCP: version 1, message length = datagram - 4
    return len(p) >= 8 and p[0] >> 5 == 1 and struct.unpack_from("!H", p, 2)[0] == len(p) - 4


def _afp_dsi(p: bytes) -> bool:
    # AFP over TCP (DSI): request/reply flag, command 1-8, total data length = rest
    return (len(p) >= 16 and p[0] in (0, 1) and 1 <= p[1] <= 8
            and _U32.unpack_from(p, 8)[0] == len(p) - 16)


# miHoYo games' KCP session handshake: 20-byte control messages framed by fixed magic numbers
# (connect, established, disconnect)
_MHY_HANDSHAKES = frozenset({(0xFF, 0xFFFFFFFF), (0x145, 0x14514545), (0x194, 0x19419494)})


def _mihoyo_handshake(p: bytes) -> bool:
    return len(p) == 20 and (_U32.unpack_from(p, 0)[0], _U32.unpack_from(p, 16)[0]) in \
        _MHY_HANDSHAKES


def _viber_tcp(p: bytes) -> bool:
    # Viber's own TCP protocol on its documented ports: little-endian total length first
    return len(p) >= 8 and struct.unpack_from("<H", p, 0)[0] == len(p)


# (app, l4s, ports or None, check, confidence)
TABLE: tuple = (
    ("eaq", ("udp",), {6000}, _eaq, 0.7),
    ("alicloud", ("tcp",), None, _alicloud, 0.8),
    ("fix", ("tcp",), None, _fix, 0.9),
    ("tuyalp", ("udp", "tcp"), None, _tuya, 0.9),
    ("avast", ("tcp",), None, _avast, 0.9),
    ("dnscrypt", ("udp", "tcp"), None, _dnscrypt, 0.85),
    ("nfs", ("udp", "tcp"), None, _onc_rpc_nfs, 0.8),
    ("bjnp", ("udp", "tcp"), None, _bjnp, 0.9),
    ("hp-virtgrp", ("tcp",), None, _hp_virtgrp, 0.7),
    ("tplink-shp", ("udp", "tcp"), {9999}, _tplink_shp, 0.9),
    ("elasticsearch", ("tcp",), None, _elasticsearch, 0.85),
    ("kcp", ("udp",), None, _kcp, 0.7),
    ("nintendo", ("udp",), None, _nintendo, 0.75),
    ("tocaboca", ("udp",), {5055, 5056}, _photon, 0.8),
    ("socks", ("tcp",), {1080}, _socks, 0.7),
    ("dropbox", ("udp",), {17500}, _dropbox_lansync, 0.85),
    ("xiaomi", ("tcp",), None, _xiaomi, 0.8),
    ("zug", ("udp",), None, _zug, 0.8),
    ("monero", ("tcp",), None, _levin, 0.85),
    ("munin", ("tcp",), None, _munin, 0.9),
    ("roughtime", ("udp", "tcp"), {2002}, _roughtime, 0.8),
    ("spotify", ("udp",), None, lambda p: p.startswith(b"SpotUdp0"), 0.9),
    ("tftp", ("udp",), None, _tftp_data, 0.7),
    ("cassandra", ("tcp",), None, _cql, 0.7),
    ("mqtt", ("tcp",), {1883}, _mqtt_packet, 0.7),
    ("hart-ip", ("udp", "tcp"), {5094}, _hart_ip, 0.8),
    ("trdp", ("udp", "tcp"), None, _trdp, 0.75),
    ("raknet", ("udp",), None, _raknet, 0.85),
    ("radmin", ("tcp",), {4899}, lambda p: len(p) >= 10 and p[:4] == b"\x01\x00\x00\x00", 0.7),
    ("rsh", ("tcp",), {514}, _rsh, 0.8),
    ("thrift", ("tcp",), None, _thrift, 0.8),
    ("nats", ("tcp",), None, lambda p: p.startswith((b'INFO {"server_id"', b"CONNECT {\"")), 0.85),
    ("knxnet-ip", ("udp", "tcp"), None, _knxnet_ip, 0.8),
    ("iec62056", ("tcp", "udp"), None, _dlms_hdlc, 0.75),
    ("ieee-c37118", ("tcp", "udp"), None, _c37118, 0.8),
    ("atg", ("tcp",), {10001}, _atg, 0.8),
    ("ldap", ("tcp", "udp"), None, _ldap_any, 0.75),
    ("ceph", ("tcp",), None, lambda p: p.startswith(b"ceph v0"), 0.9),
    ("citrix", ("tcp",), None, lambda p: p.startswith(b"\x7f\x7fICA\x00"), 0.9),
    ("diameter", ("tcp",), {3868}, _diameter, 0.85),
    ("edonkey", ("tcp",), None, _edonkey, 0.75),
    ("fastcgi", ("tcp",), None, _fastcgi, 0.75),
    ("irc", ("tcp",), None, _irc, 0.8),
    ("jrmi", ("tcp",), None, lambda p: p.startswith(b"JRMI\x00"), 0.9),
    ("mpeg-ts", ("udp",), None, _mpegts, 0.8),
    ("mpeg-ts", ("udp",), None, _mpegts_one, 0.45),
    ("openflow", ("tcp",), {6633, 6653}, _openflow, 0.8),
    ("openwire", ("tcp",), None, lambda p: len(p) > 13 and p[5:13] == b"ActiveMQ", 0.9),
    ("postgresql", ("tcp",), None, _postgres_startup, 0.8),
    ("rsync", ("tcp",), None, lambda p: p.startswith(b"@RSYNCD: "), 0.95),
    ("rtps", ("udp", "tcp"), None,
     lambda p: p[:4] == b"RTPS" and p[4:5] in (b"\x01", b"\x02"), 0.9),
    ("smpp", ("tcp",), None, _smpp, 0.75),
    ("stomp", ("tcp",), None, lambda p: p.startswith((b"STOMP\n", b"CONNECTED\nversion:",
                                                       b"CONNECT\naccept-version:")), 0.9),
    ("teamviewer", ("udp",), None, _teamviewer, 0.7),
    ("teamviewer", ("tcp",), {5938}, lambda p: p[:2] == b"\x17\x24", 0.8),
    ("pfcp", ("udp",), {8805}, _pfcp, 0.8),
    ("kismet", ("tcp",), None, lambda p: p.startswith(b"*KISMET: "), 0.9),
    ("afp", ("tcp",), {548}, _afp_dsi, 0.8),
    ("genshinimpact", ("udp",), None, _mihoyo_handshake, 0.8),
    ("viber", ("tcp",), {4244, 5242, 5243}, _viber_tcp, 0.7),
    ("worldofwarcraft", ("tcp",), None,
     lambda p: p[2:30] == b"WORLD OF WARCRAFT CONNECTION", 0.9),
)

_BY_L4: dict[str, list] = {"udp": [], "tcp": []}
for _row in TABLE:
    for _l4 in _row[1]:
        _BY_L4[_l4].append(_row)


# the rows a flow's ports can match, in table order
_TABLE = PortRows(_BY_L4)
_rows = _TABLE.rows


def match(flow: Flow, ctx) -> Label | None:
    pl = flow.last.payload
    l4 = flow.l4
    ports = flow.ports()
    hit = _TABLE.first(l4, ports, pl)
    if hit is not None:
        return app_label(hit[0], f"{hit[0]}-header", hit[1], l4=l4)
    if l4 == "tcp" and 102 in ports:
        app = _iso_tsap(pl)
        if app is not None:
            return app_label(app, "iso-tsap-cotp-data", 0.8)
    if flow.npayload >= 3:
        return GIVE_UP
    return None
