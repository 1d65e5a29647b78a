"""HTTP Host, TLS SNI, QUIC Initial SNI, DNS, BitTorrent, and the host tables."""

from __future__ import annotations

import os
import struct

from xdpgate.control.classify import quic
from xdpgate.control.classify.hosts import HostKnowledge, app_for_host
from xdpgate.control.classify.engine import Classifier

from .build import first_label, tcp, udp


def client_hello(sni: str, alpn: tuple[bytes, ...] = (b"h2",)) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    alpn_list = b"".join(bytes([len(a)]) + a for a in alpn)
    alpn_ext = struct.pack("!HHH", 16, len(alpn_list) + 2, len(alpn_list)) + alpn_list
    exts = sni_ext + alpn_ext
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def tls_record(hs: bytes) -> bytes:
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_client_hello_to_zoom_is_zoom_chat(clf):
    lab = first_label(clf, [tcp(tls_record(client_hello("us04web.zoom.us")), 40000, 443)])
    assert (lab.app, lab.category) == ("zoom", "chat")
    assert lab.reason == "tls-sni:us04web.zoom.us"


def test_tls_on_an_odd_port_with_unknown_sni_is_plain_tls_web(clf):
    lab = first_label(clf, [tcp(tls_record(client_hello("intranet.example")), 40000, 8443)])
    assert (lab.app, lab.category) == ("tls", "web")


def test_operator_host_list_overrides_the_builtin_table():
    kn = HostKnowledge()
    kn.add_hosts({"corp.example": "webex"})
    clf = Classifier(knowledge=kn)
    lab = first_label(clf, [tcp(tls_record(client_hello("meet.corp.example")), 40000, 443)])
    assert lab.app == "webex"


def test_operator_ip_prefix_labels_silent_udp():
    kn = HostKnowledge()
    kn.add_ip_prefixes({"198.51.100.0/24": "webex"})
    clf = Classifier(knowledge=kn)
    lab = first_label(clf, [udp(os.urandom(200), 40000, 9000, dst="198.51.100.4")])
    assert (lab.app, lab.category) == ("webex", "voip")


def test_http_host_names_the_app(clf):
    req = b"GET /watch HTTP/1.1\r\nHost: www.youtube.com\r\nUser-Agent: x\r\n\r\n"
    lab = first_label(clf, [tcp(req, 40000, 80)])
    assert (lab.app, lab.category) == ("youtube", "streaming")


def test_dns_query_about_whatsapp_is_dns(clf):
    q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01g\x08whatsapp\x03net\x00\x00\x01\x00\x01"
    lab = first_label(clf, [udp(q, 40000, 53)])
    assert (lab.app, lab.category) == ("dns", "dns")


def test_bittorrent_handshake_is_p2p(clf):
    hs = b"\x13BitTorrent protocol" + bytes(8) + os.urandom(40)
    lab = first_label(clf, [tcp(hs, 40000, 51413)])
    assert (lab.app, lab.category) == ("bittorrent", "p2p")


def test_bittorrent_dht_query_is_p2p(clf):
    q = b"d1:ad2:id20:" + b"A" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
    lab = first_label(clf, [udp(q, 40000, 6881)])
    assert (lab.app, lab.category) == ("bittorrent", "p2p")


def test_utp_syn_answered_by_state_is_bittorrent(clf):
    syn = bytes([0x41, 0]) + struct.pack("!HIIIHH", 777, 1, 0, 1 << 20, 1, 0)
    state = bytes([0x21, 0]) + struct.pack("!HIIIHH", 777, 2, 1, 1 << 20, 9, 1)
    lab = first_label(clf, [udp(syn, 40000, 40001),
                            udp(state, 40001, 40000, src="192.0.2.10", dst="10.1.0.2")])
    assert (lab.app, lab.reason) == ("bittorrent", "utp-syn-state")


def build_quic_initial(sni: str, dcid: bytes) -> bytes:
    """A real QUIC v1 client Initial (RFC 9001 section 5) carrying a ClientHello."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, iv, hp = quic.initial_keys(1, dcid)
    hello = client_hello(sni, (b"h3",))
    frames = b"\x06\x00" + bytes([0x40 | (len(hello) >> 8), len(hello) & 0xFF]) + hello
    frames += bytes(1200 - len(frames))  # PADDING to the minimum datagram size
    pn = 0
    pn_bytes = pn.to_bytes(2, "big")
    length = len(pn_bytes) + len(frames) + 16
    header = (bytes([0xC1]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + b"\x00"
              + b"\x00" + bytes([0x40 | (length >> 8), length & 0xFF]) + pn_bytes)
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    payload = AESGCM(key).encrypt(nonce, frames, header)
    pn_off = len(header) - 2
    sample = payload[4 - 2 : 4 - 2 + 16]
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([header[0] ^ (mask[0] & 0x0F)])
    masked_pn = bytes(a ^ b for a, b in zip(pn_bytes, mask[1:3]))
    return first + header[1:pn_off] + masked_pn + payload


def test_quic_v1_initial_sni_is_read_through_the_public_keys():
    pkt = build_quic_initial("www.youtube.com", bytes.fromhex("8394c8f03e515708"))
    clf = Classifier()
    lab = first_label(clf, [udp(pkt, 40000, 443)])
    assert (lab.app, lab.category) == ("youtube", "streaming")
    assert lab.reason.startswith("quic-sni:")


def test_quic_initial_cut_by_the_snap_length_still_gives_the_sni():
    pkt = build_quic_initial("meet.google.com", os.urandom(8))
    full = udp(pkt, 40000, 443)
    full.data = full.data[:400]
    lab = first_label(Classifier(), [full])
    assert (lab.app, lab.category) == ("google-meet", "chat")


def test_quic_keys_match_rfc9001_appendix_a():
    key, iv, hp = quic.initial_keys(1, bytes.fromhex("8394c8f03e515708"))
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_host_suffixes_match_on_label_boundaries_only():
    assert app_for_host("us04web.zoom.us") == "zoom"
    assert app_for_host("zoom.us.example.org") is None
    assert app_for_host("mmg.whatsapp.net") == "whatsapp"
    assert app_for_host("example.org") is None
