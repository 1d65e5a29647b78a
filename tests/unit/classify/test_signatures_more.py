"""Signatures added for the long tail (appsigs.py, gnutella descriptors, viber, zoom P2P, QUIC
without keys, SRTCP, HTTP response heads, TLS certificate names, PPP/HDLC links): each one
recognised on packets built here, and a near miss that must not be."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import dpkt
import pytest

from xdpgate.control.classify import rtp, stats
from xdpgate.control.classify.base import Flow, Sample
from xdpgate.control.classify.engine import Classifier
from xdpgate.control.classify.hosts import app_for_host
from xdpgate.control.classify.offline import classify_capture
from xdpgate.control.classify.packet import FlowKey

from .build import first_label, tcp, udp
from .test_web_and_p2p import client_hello, tls_record

U32 = struct.Struct("!I")


def label(pkts):
    return first_label(Classifier(max_packets=8), pkts)


def u(payloads, sport=40000, dport=40001):
    """UDP packets; a payload given as (1, bytes) goes server to client."""
    out = []
    for i, p in enumerate(payloads):
        d, p = p if isinstance(p, tuple) else (0, p)
        a, b = (sport, dport) if d == 0 else (dport, sport)
        src, dst = ("10.1.0.2", "192.0.2.10") if d == 0 else ("192.0.2.10", "10.1.0.2")
        out.append(udp(p, a, b, src=src, dst=dst, ts=i * 0.02))
    return out


def t(payloads, sport=40000, dport=40001):
    out = []
    for i, p in enumerate(payloads):
        d, p = p if isinstance(p, tuple) else (0, p)
        a, b = (sport, dport) if d == 0 else (dport, sport)
        src, dst = ("10.1.0.2", "192.0.2.10") if d == 0 else ("192.0.2.10", "10.1.0.2")
        out.append(tcp(p, a, b, src=src, dst=dst, ts=i * 0.02))
    return out


def tuya(body: bytes, tail=b"\x00\x00\xaa\x55") -> bytes:
    n = 16 + len(body) + 4
    return b"\x00\x00\x55\xaa" + b"\x00" * 8 + U32.pack(n - 16) + body + tail


def tplink(obj: bytes) -> bytes:
    key, out = 171, bytearray()
    for c in obj:
        key ^= c
        out.append(key)
    return bytes(out)


def photon(commands: int, declared: int) -> bytes:
    head = b"\xff\xff\x00" + bytes([declared]) + b"\x00\x00\x00\x0f" + b"\x07\x1e\x14\x34"
    cmds = b"".join(b"\x02\xff\x01\x04" + U32.pack(44) + U32.pack(1) + b"\x00" * 32
                    for _ in range(commands))
    return head + cmds


def kcp(cmd: int, data: bytes = b"") -> bytes:
    return (b"\x0a\x00\x00\x00" + bytes([cmd, 0]) + b"\x80\x00" + b"\x00" * 12
            + struct.pack("<I", len(data)) + data)


GNUTELLA_GUID = bytes(range(16))
RAKNET = b"\x00\xff\xff\x00\xfe\xfe\xfe\xfe\xfd\xfd\xfd\xfd\x12\x34\x56\x78"
SMPP = (b"\x00\x00\x00\x02" + b"\x00" * 4 + b"\x00\x00\x00\x01"
        + b"sys\x00pw\x00\x00\x34\x00\x00\x00")
DIAM = b"\x80\x00\x01\x01" + b"\x00" * 12 + b"\x00" * 8

# (case, packets, expected app) -- every new signature
POSITIVE = [
    ("gnutella-dht", u([GNUTELLA_GUID + b"\x44\x00\x00" + struct.pack("<I", 10) + b"x" * 10]),
     "gnutella"),
    ("eaq", u([b"\0\0\0\x01\0\0\r\xda\0\x07\x16\x1c\0\0\x90\0"], dport=6000), "eaq"),
    ("alicloud", t([b"\xce\xfa\xbe\xba\x80\0\0\0"], dport=8999), "alicloud"),
    ("fix", t([b"8=FIX.4.2\x019=12\x0135=A\x0110=000\x01"], dport=4000), "fix"),
    ("tuyalp", u([tuya(b"k" * 40)], dport=6667), "tuyalp"),
    ("avast", t([b"NOSA\x00\x20" + b"\x01" * 26], dport=80), "avast"),
    ("dnscrypt", u([os.urandom(256), (1, b"r6fnvWj8" + os.urandom(100))], dport=8443),
     "dnscrypt"),
    ("nfs", u([b"8DvY" + U32.pack(0) + U32.pack(2) + U32.pack(100003) + U32.pack(3)
               + U32.pack(1) + b"\x00" * 16], dport=2049), "nfs"),
    ("bjnp", u([b"BJNP\x02\x01\x00\x00\x17\xa4" + b"\x00" * 6], dport=8612), "bjnp"),
    ("hp-virtgrp", t([b"\x16\x00\x40\x00" + b"\x55" * 60], dport=5223), "hp-virtgrp"),
    ("tplink-shp", u([tplink(b'{"system":{"get_sysinfo":{}}}')], 9999, 9999), "tplink-shp"),
    ("elasticsearch", t([b"ES" + U32.pack(20) + b"\x01" * 20], dport=9300), "elasticsearch"),
    ("kcp", u([kcp(81, b"d" * 40), (1, kcp(82))]), "kcp"),
    ("nintendo", u([b"\x32\xab\x98\x64\x02\x00\x00\x00" + os.urandom(68)]), "nintendo"),
    ("photon", u([photon(1, 1)], dport=5055), "tocaboca"),
    ("socks5", t([b"\x05\x02\x00\x01"], dport=1080), "socks"),
    ("dropbox", u([b'{"host_int": 4137, "version": [2, 0], "port": 17500}'], 17500, 17500),
     "dropbox"),
    ("xiaomi", t([b"\xc2\xfe\x00\x05" + U32.pack(20) + b"\x00\x02\x00\x16" + b"x" * 20],
                 dport=5222), "xiaomi"),
    ("zug", u([b"\x00zUG" + os.urandom(40)], dport=19000), "zug"),
    ("monero", t([b"\x01\x21\x01\x01\x01\x01\x01\x01" + b"\x00" * 30], dport=18080), "monero"),
    ("munin", t([(1, b"# munin node at gw\n")], dport=4949), "munin"),
    ("roughtime", u([struct.pack("<II", 2, 64) + b"NONCPAD\xff" + b"\x00" * 100], dport=2002),
     "roughtime"),
    ("wow", t([(1, b"0\x00WORLD OF WARCRAFT CONNECTION - SERVER TO CLIENT\x00")], dport=3724),
     "worldofwarcraft"),
    ("spotify", u([b"SpotUdp0" + os.urandom(36)], 57621, 57621), "spotify"),
    ("tftp-data", u([b"\x00\x03\x00\x01" + b"t" * 512]), "tftp"),
    ("cassandra", t([b"\x05\x00\x00\x00\x05\x00\x00\x00\x00"], dport=9042), "cassandra"),
    ("mqtt", t([b"\xc0\x00"], dport=1883), "mqtt"),
    ("hart-ip", u([b"\x01\x00\x00\x00\x00\x02\x00\x0d\x01\x00\x00\x75\x30"], dport=5094),
     "hart-ip"),
    ("trdp", u([b"\x00\x00\x00\x00\x01\x00Mr" + b"\x00" * 40], dport=17225), "trdp"),
    ("raknet", u([b"\x01" + b"\x00" * 8 + RAKNET + b"\x00" * 8], dport=19132), "raknet"),
    ("radmin", t([b"\x01\x00\x00\x00\x01\x00\x00\x00\x08\x08"], dport=4899), "radmin"),
    ("rsh", t([b"1020\x00"], 1021, 514), "rsh"),
    ("thrift", t([b"\x80\x01\x00\x01" + U32.pack(4) + b"ping" + U32.pack(1) + b"\x00"]),
     "thrift"),
    ("nats", t([(1, b'INFO {"server_id":"NALG"}\r\n')], dport=4222), "nats"),
    ("knxnet-ip", u([b"\x06\x10\x02\x01\x00\x0e\x08\x01\xc0\xa8\x58\xe7\xa1\x7f"], dport=3671),
     "knxnet-ip"),
    ("dlms", t([b"~\xa0\x07\x03!\x93\x0f\x01~"], dport=4059), "iec62056"),
    ("c37118", t([b"\xaaA\x00\x12" + b"\x00" * 14], dport=4712), "ieee-c37118"),
    ("atg", t([b"\x01I20100\r\n"], dport=10001), "atg"),
    ("ldap-any-port", t([b"0\x0c\x02\x01\x01`\x07\x02\x01\x03\x04\x00\x80\x00"], dport=1389),
     "ldap"),
    ("ceph", t([(1, b"ceph v027")], dport=6789), "ceph"),
    ("citrix", t([(1, b"\x7f\x7fICA\x00")], dport=1494), "citrix"),
    ("diameter", t([b"\x01" + (4 + len(DIAM)).to_bytes(3, "big") + DIAM], dport=3868),
     "diameter"),
    ("edonkey", t([b"\xe3" + struct.pack("<I", 20) + b"\x01" * 20], dport=4662), "edonkey"),
    ("fastcgi", t([b"\x01\x01\x00\x01\x00\x08\x00\x00" + b"\x00\x01\x01" + b"\x00" * 5],
                  dport=9000), "fastcgi"),
    ("irc", t([b"NICK tester\r\n"], dport=6667), "irc"),
    ("jrmi", t([b"JRMI\x00\x02K"], dport=1099), "jrmi"),
    ("mpegts", u([b"".join(b"\x47" + bytes([i]) + os.urandom(186) for i in range(7))],
                 dport=1234), "mpeg-ts"),
    ("openflow", t([b"\x04\x00\x00\x10" + b"\x00" * 12], dport=6653), "openflow"),
    ("openwire", t([U32.pack(30) + b"\x01ActiveMQ" + b"\x00" * 22], dport=61616), "openwire"),
    ("postgres-ssl-any-port", t([b"\x00\x00\x00\x08\x04\xd2\x16\x2f"], dport=60102),
     "postgresql"),
    ("rsync", t([b"@RSYNCD: 30.0\n"], dport=873), "rsync"),
    ("rtps", u([b"RTPS\x02\x01\x01\x01NDDSPING"], dport=7410), "rtps"),
    ("smpp", t([U32.pack(len(SMPP) + 4) + SMPP], dport=2775), "smpp"),
    ("stomp", t([b"STOMP\naccept-version:1.1\n\n\x00"], dport=61613), "stomp"),
    ("teamviewer-udp", u([b"\x00" * 11 + b"\x17\x00\x24" + b"\x00" * 20]), "teamviewer"),
    ("pfcp", u([b"\x21\x01\x00\x0c" + b"\x00" * 12], 8805, 8805), "pfcp"),
    ("kismet", t([(1, b"*KISMET: 0.0.0 1144004381 \x01Kismet\x01\n")], dport=2501), "kismet"),
    ("afp", t([b"\x00\x02\x22\xc6" + b"\x00" * 4 + U32.pack(6) + b"\x00" * 4 + b"\x11" * 6],
              dport=548), "afp"),
    ("s7comm", t([b"\x03\x00\x00\x19\x02\xf0\x80\x32" + b"\x00" * 17], dport=102), "s7comm"),
    ("mms", t([b"\x03\x00\x00\x0c\x02\xf0\x80\x0d\x9e\x05\x06\x13"], dport=102),
     "iso9506-1-mms"),
    ("mihoyo-handshake", u([U32.pack(0xFF) + b"\x00" * 12 + U32.pack(0xFFFFFFFF)], dport=22101),
     "genshinimpact"),
    ("viber-tcp", t([struct.pack("<H", 56) + b"\x0b\x00\x00\x00" + os.urandom(50)], dport=4244),
     "viber"),
    ("bfd-echo", u([b"\x00" * 7 + b"\x01" + b"\x00" * 4], 49152, 3785), "bfd"),
    ("h225-ras", u([b"\x0e\x80\x46\x92\x06\x00\x08\x91\x4a\x00\x06\x00" + b"\x01" * 40],
                   1719, 1719), "h323"),
]

# (case, packets, app that must NOT be given)
NEAR_MISS = [
    ("gnutella-ping-alone", u([GNUTELLA_GUID + b"\x00\x01\x00" + struct.pack("<I", 5) + b"x" * 5]),
     "gnutella"),
    ("gnutella-bad-length", u([GNUTELLA_GUID + b"\x44\x00\x00" + struct.pack("<I", 9) + b"x" * 10]),
     "gnutella"),
    ("eaq-other-port", u([b"\0\0\0\x01\0\0\r\xda\0\x07\x16\x1c\0\0\x90\0"], dport=6001), "eaq"),
    ("alicloud-magic-off", t([b"\xce\xfa\xbe\xbb\x80\0\0\0"], dport=8999), "alicloud"),
    ("fix-without-tags", t([b"8=FIX but no fields here at all\r\n"], dport=4000), "fix"),
    ("tuya-bad-suffix", u([tuya(b"k" * 40, tail=b"\x00\x00\xaa\x56")], dport=6667), "tuyalp"),
    ("avast-bad-length", t([b"NOSA\x00\x21" + b"\x01" * 26], dport=80), "avast"),
    ("nfs-other-program", u([b"8DvY" + U32.pack(0) + U32.pack(2) + U32.pack(100001)
                             + U32.pack(3) + U32.pack(1) + b"\x00" * 16], dport=2049), "nfs"),
    ("bjnp-wrong-magic", u([b"BJNX\x02\x01\x00\x00\x17\xa4" + b"\x00" * 6], dport=8612), "bjnp"),
    ("tls-is-not-hp-virtgrp", t([tls_record(client_hello("a.example"))], dport=5223),
     "hp-virtgrp"),
    ("tplink-random", u([os.urandom(40)], 9999, 9999), "tplink-shp"),
    ("es-bad-length", t([b"ES" + U32.pack(21) + b"\x01" * 20], dport=9300), "elasticsearch"),
    ("kcp-bad-cmd", u([kcp(90, b"d" * 40)]), "kcp"),
    ("nintendo-magic-off", u([b"\x32\xab\x98\x65\x02\x00\x00\x00" + os.urandom(68)]), "nintendo"),
    ("photon-count-mismatch", u([photon(1, 2)], dport=5055), "tocaboca"),
    ("socks5-bad-length", t([b"\x05\x05\x00"], dport=1080), "socks"),
    ("dropbox-other-json", u([b'{"name": "x", "version": [2, 0]}'], 17500, 17500), "dropbox"),
    ("xiaomi-bad-length", t([b"\xc2\xfe\x00\x05" + U32.pack(21) + b"\x00" * 24], dport=5222),
     "xiaomi"),
    ("roughtime-no-tags", u([struct.pack("<II", 2, 64) + b"ABCDEFGH" + b"\x00" * 100],
                            dport=2002), "roughtime"),
    ("tftp-short-block", u([b"\x00\x03\x00\x01" + b"t" * 100]), "tftp"),
    ("mqtt-bad-length", t([b"\xc0\x05"], dport=1883), "mqtt"),
    ("thrift-bad-name", t([b"\x80\x01\x00\x01" + U32.pack(4) + b"p\x00n\x01"]), "thrift"),
    ("knx-bad-length", u([b"\x06\x10\x02\x01\x00\x0f\x08\x01\xc0\xa8\x58\xe7\xa1\x7f"],
                         dport=3671), "knxnet-ip"),
    ("dlms-bad-length", t([b"~\xa0\x08\x03!\x93\x0f\x01~"], dport=4059), "iec62056"),
    ("ldap-bad-length", t([b"0\x0d\x02\x01\x01`\x07\x02\x01\x03\x04\x00\x80\x00"], dport=1389),
     "ldap"),
    ("edonkey-bad-length", t([b"\xe3" + struct.pack("<I", 21) + b"\x01" * 20], dport=4662),
     "edonkey"),
    ("mpegts-lost-sync", u([b"".join(b"\x46" + os.urandom(187) for _ in range(7))], dport=1234),
     "mpeg-ts"),
    ("http-on-5060-is-not-sip", t([b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"], dport=5060),
     "sip"),
    ("mihoyo-bad-magic", u([U32.pack(0xFF) + b"\x00" * 12 + U32.pack(0xFFFFFFFE)], dport=22101),
     "genshinimpact"),
    ("viber-tcp-off-port", t([struct.pack("<H", 56) + b"\x0b\x00\x00\x00" + os.urandom(50)],
                             dport=4245), "viber"),
]


@pytest.mark.parametrize("name,pkts,app", POSITIVE, ids=[c[0] for c in POSITIVE])
def test_signature_recognised(name, pkts, app):
    lab = label(pkts)
    assert lab is not None and lab.app == app, (name, lab)
    assert lab.confidence >= 0.5


@pytest.mark.parametrize("name,pkts,app", NEAR_MISS, ids=[c[0] for c in NEAR_MISS])
def test_near_miss_not_recognised(name, pkts, app):
    lab = label(pkts)
    # a well-known port may still give its weak, undecided hint
    assert lab is None or lab.app != app or lab.confidence < 0.5, (name, lab)


# -- voice: Viber UDP sessions, Zoom P2P probes, SRTCP ------------------------------------

def viber(tag: bytes, mtype: int, body: bytes) -> bytes:
    return tag + bytes([mtype, 0]) + body


def test_viber_udp_session_is_voip():
    pkts = u([viber(b"\xed\xf6", 1, b"\x05\x00" + os.urandom(40)),
              (1, viber(b"\xed\xf6", 0x0C, b"\x01\x00" + os.urandom(70)))], dport=7985)
    lab = label(pkts)
    assert (lab.app, lab.category) == ("viber", "voip")


def test_viber_like_packets_with_changing_tags_are_not_viber():
    pkts = u([viber(b"\xed\xf6", 1, b"\x05\x00" + os.urandom(40)),
              (1, viber(b"\x11\x22", 0x0C, b"\x01\x00" + os.urandom(70)))], dport=7985)
    lab = label(pkts)
    assert lab is None or lab.app != "viber"


def zoom_p2p(addr: bytes, uuid: bytes) -> bytes:
    return (b"\x1f\x02\x01\x00\x08\x00\x01\x00\x04\x00" + os.urandom(4) + b"\0\0\0\x07"
            + b"\0\0\0b\xb8\xd0" + U32.pack(len(addr)) + addr + U32.pack(len(uuid)) + uuid)


def test_zoom_p2p_probe_is_zoom_voip():
    lab = label(u([zoom_p2p(b"10.78.14.178", b"C5EADFA1-E2D0-417E-87F2-7B0BFF439362")]))
    assert (lab.app, lab.category) == ("zoom", "voip")


def test_zoom_p2p_shape_without_a_uuid_is_not_zoom():
    lab = label(u([zoom_p2p(b"10.78.14.178", b"X" * 36)]))
    assert lab is None or lab.app != "zoom"


def srtcp(ssrc: bytes, tail: int) -> bytes:
    return b"\x81\xc9\x00\x07" + ssrc + b"\x00" * 24 + os.urandom(tail)


def test_srtcp_both_ways_is_rtcp_voip():
    lab = label(u([srtcp(b"T\x9a\xa5\xda", 46), (1, srtcp(b"\x0b\x86U\x19", 46))]))
    assert (lab.app, lab.category) == ("rtcp", "voip")
    assert rtp.is_srtcp(srtcp(b"abcd", 46)) and not rtp.is_srtcp(srtcp(b"abcd", 2))


def test_quic_mvfst_initial_is_facebook_web_not_voip():
    pl = b"\xc9\xfa\xce\xb0\x02\x08" + os.urandom(8) + b"\x00" + os.urandom(1235)
    lab = label(u([pl], dport=443))
    assert (lab.app, lab.category) == ("facebook", "web")
    unknown_version = b"\xc9\x1a\x2a\x3a\x4a\x08" + os.urandom(8) + b"\x00" + os.urandom(1235)
    lab = label(u([unknown_version], dport=443))
    assert lab is None or lab.reason not in ("quic-mvfst", "quic-long-header")


# -- the statistical voip fallback -------------------------------------------------------

def _flow(payloads) -> Flow:
    f = Flow(key=FlowKey("udp", "10.1.0.2", 40000, "192.0.2.10", 40001), first_ts=0.0,
             last_ts=0.0)
    for i, (d, p) in enumerate(payloads):
        f.samples.append(Sample(d, p, i * 0.02, len(p) + 28))
    return f


def test_voip_stats_names_paced_random_media_both_ways():
    rnd = random.Random(7)
    f = _flow([(i % 2, bytes(rnd.randrange(1, 256) for _ in range(160))) for i in range(8)])
    lab = stats.match(f, None)
    assert lab is not None and lab.category == "voip" and lab.reason == "voip-stats"
    assert lab.confidence < 0.5


def test_voip_stats_ignores_repeated_and_zero_padded_datagrams():
    rnd = random.Random(7)
    same = bytes(rnd.randrange(1, 256) for _ in range(160))
    assert stats.match(_flow([(i % 2, same) for i in range(8)]), None) is None
    padded = [(i % 2, bytes([i]) + b"\x00" * 100 + bytes(rnd.randrange(256) for _ in range(59)))
              for i in range(8)]
    assert stats.match(_flow(padded), None) is None


# -- HTTP response heads, DASH segments, TLS certificate names ------------------------------

def test_http_response_server_header_names_ntop():
    lab = label(t([b"GET /generate204 HTTP/1.1\r\nConnection: close\r\n\r\n",
                   (1, b"HTTP/1.1 302 Found\r\nServer: ntopng 6.1\r\n\r\n")], dport=80))
    assert (lab.app, lab.category) == ("ntop", "network")


def test_http_dash_segment_is_mpegdash_but_a_page_is_http():
    lab = label(t([b"GET /live/V2400/2065.m4s HTTP/1.1\r\nHost: cdn.example\r\n\r\n"], dport=80))
    assert (lab.app, lab.category) == ("mpegdash", "streaming")
    lab = label(t([b"GET /index.html HTTP/1.1\r\nHost: cdn.example\r\n\r\n",
                   (1, b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n")], dport=80))
    assert (lab.app, lab.category) == ("http", "web")


def _server_cert(name: bytes) -> bytes:
    gn = b"\x82" + bytes([len(name)]) + name
    san = b"\x06\x03\x55\x1d\x11" + b"\x04" + bytes([len(gn) + 2]) + b"\x30" + bytes([len(gn)]) + gn
    hs = b"\x02\x00\x00\x26" + b"\x03\x03" + b"\x00" * 36 + b"\x0b\x00\x00\x40" + san + b"\x00" * 8
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def test_tls_without_a_useful_sni_is_named_by_the_certificate():
    lab = label(t([tls_record(client_hello("52.114.250.153")),
                   (1, _server_cert(b"tr.teams.microsoft.com"))], dport=443))
    assert lab.app == "teams" and lab.reason.startswith("tls-cert:")
    lab = label(t([tls_record(client_hello("52.114.250.153")),
                   (1, _server_cert(b"intranet.example"))], dport=443))
    assert (lab.app, lab.category) == ("tls", "web")


def test_doh_resolvers_by_name_shape_only_where_a_client_asked_for_the_name():
    assert app_for_host("resolver-eu.lelux.fi") == "doh-dot"
    assert app_for_host("dns1.isp.example.net") == "doh-dot"  # an SNI
    assert app_for_host("dns1.isp.example.net", shapes=False) is None  # a DNS answer's name
    assert app_for_host("resolvers.example.com") != "doh-dot"


def test_the_vendors_country_domains_are_theirs():
    assert app_for_host("www.google.de") == "google"
    assert app_for_host("adservice.google.com.br") == "google"
    assert app_for_host("www.amazon.co.jp") == "amazon"
    assert app_for_host("google.example.org") is None


# -- PPP and Cisco HDLC captures -----------------------------------------------------------

@pytest.mark.parametrize("linktype,prefix", [(9, b"\xff\x03\x00\x21"), (9, b"\x00\x21"),
                                             (104, b"\x0f\x00\x08\x00")])
def test_ppp_and_cisco_hdlc_links_are_read(tmp_path: Path, linktype, prefix):
    ip = udp(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",
             40000, 53).data
    path = tmp_path / "link.pcap"
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=linktype)
        w.writepkt(prefix + ip, ts=1.0)
    recs = classify_capture(str(path))
    assert [(r.app, r.dport) for r in recs] == [("dns", 53)]
