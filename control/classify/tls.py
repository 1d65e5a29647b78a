"""TLS over TCP: the ClientHello's SNI (and ALPN) names the app via the host tables.

The ClientHello may span TCP segments and the sample may be cut to the snap length, so the
parser reads as far as the bytes go.  The same ClientHello parser serves QUIC and DTLS.
"""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Spec, app_label

SPEC = Spec("tls", frozenset({"tcp"}), needs_payload=True, max_packets=6, priority=35)

CT_HANDSHAKE = 22
HS_CLIENT_HELLO, HS_SERVER_HELLO = 1, 2
EXT_SNI, EXT_ALPN = 0x0000, 0x0010
PORT_APPS = {853: "doh-dot", 5223: "applepush", 64738: "mumble", 993: "imaps", 995: "pops",
             465: "smtps", 990: "ftps"}
ALPN_APPS = {b"dot": "doh-dot"}


def parse_client_hello(hs: bytes) -> tuple[str | None, list[bytes]] | None:
    """(SNI, ALPN protocols) from a handshake message starting at its type byte.

    None if it is not a ClientHello; fields past the end of a truncated message are missing.
    """
    if len(hs) < 6 or hs[0] != HS_CLIENT_HELLO:
        return None
    off = 4 + 2 + 32  # type, length, version, random
    if len(hs) < off + 1:
        return None, []
    if hs[4] != 3 and hs[4] != 0xFE:  # TLS 3.x or DTLS 0xFEFx
        return None
    off += 1 + hs[off]  # session id
    if hs[4] == 0xFE:  # DTLS: cookie
        if len(hs) <= off:
            return None, []
        off += 1 + hs[off]
    if len(hs) < off + 2:
        return None, []
    off += 2 + struct.unpack_from("!H", hs, off)[0]  # cipher suites
    if len(hs) < off + 1:
        return None, []
    off += 1 + hs[off]  # compression methods
    if len(hs) < off + 2:
        return None, []
    off += 2
    sni = None
    alpn: list[bytes] = []
    while off + 4 <= len(hs):
        et, el = struct.unpack_from("!HH", hs, off)
        val = hs[off + 4 : off + 4 + el]
        if et == EXT_SNI and len(val) >= 5:
            n = struct.unpack_from("!H", val, 3)[0]
            name = val[5 : 5 + n]
            if name:
                sni = name.decode("ascii", "replace").lower()
        elif et == EXT_ALPN and len(val) >= 2:
            i = 2
            while i < len(val):
                n = val[i]
                alpn.append(val[i + 1 : i + 1 + n])
                i += 1 + n
        off += 4 + el
    return sni, alpn


def label_for_hello(flow: Flow, ctx, sni: str | None, alpn: list[bytes], carrier: str,
                    conf: float = 0.9) -> Label:
    """The label of a flow whose (TLS, QUIC or DTLS) ClientHello said ``sni``/``alpn``."""
    l4 = flow.l4
    if sni:
        ctx.knowledge.learn_name(flow.key.dst, sni)
        app = ctx.knowledge.app_for_name(sni)
        if app:
            return app_label(app, f"{carrier}-sni:{sni}"[:60], conf, l4=l4, carrier=True)
    for proto in alpn:
        if proto in ALPN_APPS:
            return app_label(ALPN_APPS[proto], f"{carrier}-alpn:{proto.decode()}", conf, l4=l4,
                             carrier=True)
    for p in (flow.sport, flow.cport):
        if p in PORT_APPS:
            return app_label(PORT_APPS[p], f"{carrier}-port:{p}", conf * 0.8, l4=l4,
                             carrier=True)
    why = f"{carrier}-sni:{sni}"[:60] if sni else f"{carrier}-client-hello"
    return app_label(carrier, why, conf * 0.9, l4=l4, carrier=True)


# X.509 name OIDs (DER, with tag and length): subjectAltName and commonName
_OID_SAN = b"\x06\x03\x55\x1d\x11"
_OID_CN = b"\x06\x03\x55\x04\x03"


def cert_names(data: bytes) -> list[str]:
    """DNS names in the certificates of a server's (clear, TLS <= 1.2) handshake bytes: the
    subjectAltName dNSName entries, then the subject commonName."""
    names: list[str] = []
    i = data.find(_OID_SAN)
    while i >= 0 and len(names) < 64:
        j = i + len(_OID_SAN)
        if j < len(data) and data[j] == 0x01:  # critical BOOLEAN
            j += 3
        if j + 2 <= len(data) and data[j] == 0x04:  # OCTET STRING wrapping the GeneralNames
            j += 2 if data[j + 1] < 0x80 else 2 + (data[j + 1] & 0x7F)
            if j + 2 <= len(data) and data[j] == 0x30:
                end = j + 2 + data[j + 1] if data[j + 1] < 0x80 else len(data)
                j += 2 if data[j + 1] < 0x80 else 2 + (data[j + 1] & 0x7F)
                while j + 2 <= min(end, len(data)):
                    tag, n = data[j], data[j + 1]
                    if n >= 0x80:
                        break
                    if tag == 0x82:
                        names.append(data[j + 2 : j + 2 + n].decode("ascii", "replace").lower())
                    j += 2 + n
        i = data.find(_OID_SAN, i + 1)
    i = data.find(_OID_CN)
    while i >= 0 and len(names) < 80:
        j = i + len(_OID_CN)
        if j + 2 <= len(data) and data[j] in (0x0C, 0x13, 0x16) and data[j + 1] < 0x80:
            names.append(data[j + 2 : j + 2 + data[j + 1]].decode("ascii", "replace").lower())
        i = data.find(_OID_CN, i + 1)
    return [n.lstrip("*.") for n in names if n]


def _from_certificate(flow: Flow, ctx, generic: Label) -> Label | None:
    """A label from the server's certificate names, the generic one once they are all seen
    (or hidden: TLS 1.3), or None to keep waiting."""
    data = flow.stream(1, 16384)
    for name in cert_names(data):
        app = ctx.knowledge.app_for_name(name)
        if app:
            return app_label(app, f"tls-cert:{name}"[:60], 0.85, carrier=True)
    # ServerHelloDone (TLS 1.2) or ChangeCipherSpec/application data: no more names coming
    if b"\x0e\x00\x00\x00" in data or b"\x14\x03\x03\x00\x01\x01" in data or \
            sum(1 for s in flow.samples if s.dir == 1 and s.payload) >= 3:
        return app_label(generic.app, generic.reason, 0.9 * 0.9, carrier=True)
    return None


def match(flow: Flow, ctx) -> Label | None:
    s = flow.last
    pl = s.payload
    generic = flow.state.get("tls_generic")
    if generic is not None:
        if s.dir != 1:
            return None
        return _from_certificate(flow, ctx, generic)
    if len(pl) < 6:
        return None if flow.npayload < 3 else GIVE_UP
    data = flow.stream(s.dir, 16384)
    if data[0] != CT_HANDSHAKE or data[1] != 3 or data[2] > 4:
        if s.dir == 0 or flow.npayload >= 3:
            return GIVE_UP
        return None
    # reassemble the handshake bytes from the records
    hs = b""
    off = 0
    while off + 5 <= len(data) and data[off] == CT_HANDSHAKE:
        n = struct.unpack_from("!H", data, off + 3)[0]
        hs += data[off + 5 : off + 5 + n]
        off += 5 + n
    if not hs:
        return None
    if hs[0] == HS_CLIENT_HELLO:
        r = parse_client_hello(hs)
        if r is None:
            return GIVE_UP
        sni, alpn = r
        hs_len = int.from_bytes(hs[1:4], "big")
        if sni is None and len(hs) < hs_len + 4 and flow.npayload < 4:
            # the hello goes on in the next segment (a large key share, a small MSS, or a
            # client splitting it on purpose): wait for the rest
            return label_for_hello(flow, ctx, None, alpn, "tls", 0.45)
        lab = label_for_hello(flow, ctx, sni, alpn, "tls")
        if lab.app == "tls" and s.dir == 0:
            # the name told nothing: the server's certificate (clear up to TLS 1.2) may
            flow.state["tls_generic"] = lab
            return app_label("tls", lab.reason, 0.45, carrier=True)
        return lab
    if hs[0] == HS_SERVER_HELLO:
        return label_for_hello(flow, ctx, None, [], "tls", 0.45)
    return GIVE_UP
