"""Signatures hold on traffic the development captures do not have: a client's random port
names no service, one STUN exchange does not turn a web server into a call, and a byte or two
that happen to match decide nothing."""

from __future__ import annotations

import os
import random
import struct

from xdpgate.control.classify.engine import CALL_ENDPOINT_TTL, Classifier

from .build import SERVER, first_label, tcp, udp
from .test_media import stun


def test_a_flow_from_a_client_port_that_is_some_services_port_is_not_that_service(clf):
    lab = first_label(clf, [udp(os.urandom(120), 11211, 443)])
    assert lab is None or lab.app != "memcached"
    lab = first_label(Classifier(), [udp(struct.pack("!HHHH", 1, 0, 1, 0) + b"get k\r\n",
                                         40000, 11211)])
    assert lab is not None and lab.app == "memcached", "the service's own port still counts"


def binding(port: int) -> list:
    """A STUN binding request and its success response between 10.1.0.2:40000 and port."""
    return [udp(stun(), 40000, port, ts=1.0),
            udp(stun(0x0101), port, 40000, src=SERVER, dst="10.1.0.2", ts=1.01)]


def test_stun_to_a_web_servers_port_does_not_make_its_later_flows_calls():
    clf = Classifier()
    assert first_label(clf, binding(443)).category == "voip"
    lab = first_label(clf, [udp(b"\xc3" + os.urandom(80), 40002, 443, ts=2.0)])
    assert lab is None or lab.reason != "ice-endpoint"


def test_a_turn_relays_socket_is_a_call_leg_until_the_endpoint_expires():
    clf = Classifier()
    assert first_label(clf, binding(3478)).reason == "stun-header"
    lab = clf.feed(udp(os.urandom(100), 40004, 3478, src="10.1.0.9", ts=2.0))
    assert lab is not None and lab.reason == "ice-endpoint" and lab.category == "voip"
    lab = first_label(clf, [udp(os.urandom(100), 40006, 3478, src="10.1.0.8",
                                ts=3.0 + CALL_ENDPOINT_TTL)])
    assert lab is None or lab.reason != "ice-endpoint"


def test_a_first_byte_of_0xef_alone_is_no_telegram_but_a_framed_opening_is(clf):
    rnd = random.Random(1)
    junk = b"\xef" + bytes(rnd.randrange(256) for _ in range(60))
    lab = first_label(clf, [tcp(junk, 40000, 8443)])
    assert lab is None or lab.app != "telegram" or lab.confidence < 0.5
    framed = b"\xef" + bytes([15]) + bytes(rnd.randrange(256) for _ in range(60))
    lab = Classifier().feed(tcp(framed, 40001, 8443))
    assert lab is not None and lab.app == "telegram"


def test_a_large_datagram_whose_fifth_byte_is_81_is_not_kcp():
    rnd = random.Random(2)
    for i in range(200):
        pl = bytearray(rnd.randrange(256) for _ in range(1000))
        pl[4] = 81
        struct.pack_into("<I", pl, 20, 5000)  # a length running past the datagram
        lab = first_label(Classifier(), [udp(bytes(pl), 40000 + i, 50000)])
        assert lab is None or lab.app != "kcp"


def test_one_ts_packet_with_its_error_bit_set_is_not_mpeg_ts():
    pl = b"\x47\x80" + os.urandom(186)
    lab = Classifier().feed(udp(pl, 40000, 5004))
    assert lab is None or lab.app != "mpeg-ts"


def test_teamspeak_port_needs_a_teamspeak_header():
    pl = bytearray(os.urandom(40))
    pl[12] = 0x0F  # no TS3 packet type
    lab = Classifier().feed(udp(bytes(pl), 40000, 9987, dst=SERVER))
    assert lab is None or lab.app != "teamspeak"


def dtls_client_hello(sni: str) -> bytes:
    """A DTLS 1.2 ClientHello in one record: its 12-byte handshake header and the cookie."""
    from .test_web_and_p2p import client_hello

    tls = client_hello(sni)
    body = b"\xfe\xfd" + tls[6:38] + tls[38:39] + tls[39:39 + tls[38]] + b"\x00" + \
        tls[39 + tls[38]:]
    hs = b"\x01" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + \
        len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + bytes(8) + struct.pack("!H", len(hs)) + hs


def test_the_sni_of_a_dtls_client_hello_names_the_call_app(clf):
    lab = first_label(clf, [udp(dtls_client_hello("meet.google.com"), 40000, 19305)])
    assert (lab.app, lab.category, lab.reason) == ("google-call", "voip",
                                                   "dtls-sni:meet.google.com")


def test_google_quic_046_in_the_long_header_names_its_sni(clf):
    name = b"www.youtube.com"
    chlo = b"CHLO" + struct.pack("<HH", 1, 0) + b"SNI\x00" + struct.pack("<I", len(name)) + name
    pl = b"\xc3Q046\x50" + os.urandom(8) + b"\x00\x00\x00\x01" + os.urandom(12) + chlo
    lab = first_label(clf, [udp(pl + bytes(1200 - len(pl)), 40000, 443)])
    assert (lab.app, lab.reason) == ("youtube", "quic-sni:www.youtube.com")


def test_a_client_hello_split_into_small_segments_still_gives_its_sni(clf):
    from .test_web_and_p2p import client_hello, tls_record

    rec = tls_record(client_hello("us04web.zoom.us") + bytes(0))
    # the SNI lies in the second segment: split right after the record and handshake headers
    a, b = rec[:60], rec[60:]
    pkts = [tcp(a, 40000, 443, ts=1.0), tcp(a, 40000, 443, ts=1.2), tcp(b, 40000, 443, ts=1.3)]
    lab = first_label(clf, pkts)  # with a retransmission of the first segment in between
    assert (lab.app, lab.reason) == ("zoom", "tls-sni:us04web.zoom.us")


def paced(tick_s: float, n: int = 8) -> list:
    """Encrypted-looking datagrams both ways, one each way every tick."""
    rnd = random.Random(3)
    out = []
    for i in range(n):
        src, dst, sp, dp = ("10.1.0.2", SERVER, 40000, 40001)
        if i % 2:
            src, dst, sp, dp = dst, src, dp, sp
        out.append(udp(bytes(rnd.getrandbits(8) for _ in range(120 + i)), sp, dp, src=src,
                       dst=dst, ts=(i // 2) * tick_s + (i % 2) * 0.001))
    return out


def test_a_game_ticking_at_64_hz_is_not_a_call_by_its_statistics(clf):
    lab = first_label(clf, paced(1 / 64))
    assert lab is None or lab.reason != "voip-stats"
    lab = first_label(Classifier(), paced(0.02))
    assert (lab.category, lab.reason) == ("voip", "voip-stats"), "a 20 ms codec pace still is"
