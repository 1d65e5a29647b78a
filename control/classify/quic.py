"""QUIC Initial packets (RFC 9000/9001, v2 RFC 9369, draft-29): decrypt the client's Initial
with the public per-version salt, reassemble the CRYPTO frames and read the ClientHello's SNI.

Samples may be cut to the snap length, so the AEAD tag cannot be checked: the payload is
decrypted as AES-CTR (what GCM does underneath) and the frames parsed as far as they go.
Google QUIC (Q0xx) carries its CHLO in clear with an SNI tag.
"""

from __future__ import annotations

import struct

from .base import GIVE_UP, Flow, Label, Spec, app_label
from .tls import label_for_hello, parse_client_hello

SPEC = Spec("quic", frozenset({"udp"}), needs_payload=True, max_packets=4, priority=25)

# version -> (initial salt, label prefix for key/iv/hp)
VERSIONS: dict[int, tuple[bytes, bytes]] = {
    0x00000001: (bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), b"quic "),
    0x6B3343CF: (bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), b"quicv2 "),
    0xFF00001D: (bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899"), b"quic "),
}
V2 = 0x6B3343CF
FRAME_PADDING, FRAME_PING, FRAME_ACK, FRAME_ACK_ECN, FRAME_CRYPTO = 0x00, 0x01, 0x02, 0x03, 0x06
GQUIC_VERSIONS = (b"Q043", b"Q046", b"Q050", b"Q039", b"Q035", b"Q044", b"Q048")

_key_cache: dict[tuple[int, bytes], tuple[bytes, bytes, bytes]] = {}


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    import hashlib
    import hmac

    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def initial_keys(version: int, dcid: bytes, server: bool = False) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) protecting the client's (or server's) Initial packets."""
    import hashlib
    import hmac

    ck = (version, dcid, server)
    hit = _key_cache.get(ck)
    if hit is not None:
        return hit
    salt, prefix = VERSIONS[version]
    initial = hmac.new(salt, dcid, hashlib.sha256).digest()
    secret = _expand_label(initial, b"server in" if server else b"client in", 32)
    keys = (_expand_label(secret, prefix + b"key", 16), _expand_label(secret, prefix + b"iv", 12),
            _expand_label(secret, prefix + b"hp", 16))
    if len(_key_cache) > 4096:
        _key_cache.clear()
    _key_cache[ck] = keys
    return keys


def _varint(buf: bytes, off: int) -> tuple[int, int]:
    b = buf[off]
    n = 1 << (b >> 6)
    if off + n > len(buf):
        raise IndexError("varint past end")
    v = b & 0x3F
    for i in range(1, n):
        v = (v << 8) | buf[off + i]
    return v, off + n


def decrypt_initial(pkt: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, DCID, decrypted frames) of a client Initial, or None if it is not one."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(pkt) < 7 or not pkt[0] & 0x80:
        return None
    version = struct.unpack_from("!I", pkt, 1)[0]
    if version not in VERSIONS:
        return None
    ptype = (pkt[0] >> 4) & 0x03
    if (version == V2 and ptype != 1) or (version != V2 and ptype != 0):
        return None
    off = 5
    dl = pkt[off]
    dcid = pkt[off + 1 : off + 1 + dl]
    if dl > 20 or len(dcid) != dl:
        return None
    off += 1 + dl
    sl = pkt[off]
    off += 1 + sl
    tok_len, off = _varint(pkt, off)
    off += tok_len
    length, off = _varint(pkt, off)
    pn_off = off
    if len(pkt) < pn_off + 4 + 16:
        return None
    key, iv, hp = initial_keys(version, dcid)
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(pkt[pn_off + 4 : pn_off + 20]) + enc.finalize()
    first = pkt[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn = int.from_bytes(bytes(a ^ b for a, b in zip(pkt[pn_off : pn_off + pn_len], mask[1:])),
                        "big")
    body = pkt[pn_off + pn_len : pn_off + length]  # may be cut short by the snap length
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce + b"\x00\x00\x00\x02")).decryptor()
    plain = ctr.update(body) + ctr.finalize()
    if len(body) == length - pn_len:
        plain = plain[:-16]  # drop the tag bytes when the whole packet is here
    return version, dcid, plain


def crypto_frames(plain: bytes) -> list[tuple[int, bytes]]:
    """(offset, data) of the CRYPTO frames in decrypted Initial frames (stops at junk)."""
    out = []
    off = 0
    try:
        while off < len(plain):
            ft = plain[off]
            if ft == FRAME_PADDING:
                off += 1
                continue
            if ft == FRAME_PING:
                off += 1
                continue
            if ft in (FRAME_ACK, FRAME_ACK_ECN):
                off += 1
                _, off = _varint(plain, off)
                _, off = _varint(plain, off)
                cnt, off = _varint(plain, off)
                _, off = _varint(plain, off)
                for _ in range(cnt):
                    _, off = _varint(plain, off)
                    _, off = _varint(plain, off)
                if ft == FRAME_ACK_ECN:
                    for _ in range(3):
                        _, off = _varint(plain, off)
                continue
            if ft == FRAME_CRYPTO:
                coff, off = _varint(plain, off + 1)
                clen, off = _varint(plain, off)
                out.append((coff, plain[off : off + clen]))
                off += clen
                continue
            break
    except IndexError:
        pass
    return out


def _assemble(chunks: dict[int, bytes]) -> bytes:
    data = b""
    while True:
        nxt = None
        for o, d in chunks.items():
            if o <= len(data) < o + len(d):
                nxt = d[len(data) - o :]
                break
        if nxt is None:
            return data
        data += nxt


def _gquic_sni(pl: bytes) -> str | None:
    i = pl.find(b"CHLO")
    if i < 0:
        return None
    try:
        ntags = struct.unpack_from("<H", pl, i + 4)[0]
        base = i + 8 + ntags * 8
        prev = 0
        for t in range(ntags):
            tag = pl[i + 8 + t * 8 : i + 12 + t * 8]
            end = struct.unpack_from("<I", pl, i + 12 + t * 8)[0]
            if tag == b"SNI\x00":
                return pl[base + prev : base + end].decode("ascii", "replace").lower()
            prev = end
    except struct.error:
        return None
    return None


# Facebook's mvfst implementation uses its own version numbers 0xfaceb00X
MVFST_VERSIONS = frozenset({0xFACEB001, 0xFACEB002, 0xFACEB00E, 0xFACEB010, 0xFACEB011})


def long_header_family(pl: bytes, wire_len: int | None = None) -> str | None:
    """A QUIC long-header Initial whose keys we do not have: "mvfst", "ietf" (drafts) or None.

    Checked: header form and fixed bits, a known version family, connection-id lengths within
    the limit (20) and the datagram padded as client Initials must be (>= 1200 bytes; the
    sample may be cut, so the packet's wire length counts when given)."""
    size = len(pl) if wire_len is None else max(len(pl), wire_len - 28)
    if size < 1200 or len(pl) < 64 or pl[0] & 0xC0 != 0xC0:
        return None
    v = int.from_bytes(pl[1:5], "big")
    dl = pl[5]
    if dl > 20 or len(pl) < 7 + dl or pl[6 + dl] > 20:
        return None
    if v in MVFST_VERSIONS:
        return "mvfst"
    if v >> 8 == 0xFF0000 or v in VERSIONS:
        return "ietf"
    return None


def match(flow: Flow, ctx) -> Label | None:
    s = flow.last
    pl = s.payload
    st = flow.state
    if s.dir == 0 and len(pl) > 13 and (
            (pl[0] & 0x80 == 0 and pl[0] & 0x08 and pl[9:13] in GQUIC_VERSIONS)  # Q043 and older
            or (pl[0] & 0xC0 == 0xC0 and pl[1:5] in GQUIC_VERSIONS)):  # Q046+: long header
        sni = _gquic_sni(pl)
        return label_for_hello(flow, ctx, sni, [], "quic", 0.85)
    if s.dir != 0:
        return None if "quic" in st else GIVE_UP
    r = decrypt_initial(pl)
    if r is None:
        fam = long_header_family(pl, s.wire_len)
        if fam == "mvfst":
            return app_label("facebook", "quic-mvfst", 0.6, l4="udp", carrier=True)
        if fam is not None and "quic" not in st:
            return app_label("quic", "quic-long-header", 0.55, l4="udp", carrier=True)
        return None if "quic" in st else GIVE_UP
    _v, _dcid, plain = r
    chunks = st.setdefault("quic", {})
    for coff, data in crypto_frames(plain):
        if coff < 65536:
            chunks[coff] = data
    hs = _assemble(chunks)
    if not hs:
        return app_label("quic", "quic-initial", 0.45, l4="udp", carrier=True)
    res = parse_client_hello(hs)
    if res is None:
        return GIVE_UP
    sni, alpn = res
    total = int.from_bytes(hs[1:4], "big") + 4 if len(hs) >= 4 else 0
    if sni is None and len(hs) < total and flow.npayload < SPEC.max_packets:
        return label_for_hello(flow, ctx, None, alpn, "quic", 0.45)
    return label_for_hello(flow, ctx, sni, alpn, "quic")
