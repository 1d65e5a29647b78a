"""STUN/TURN/ICE, RTP/RTCP, DTLS after STUN, statistics, and the near-misses."""

from __future__ import annotations

import os
import random
import struct

from xdpgate.control.classify.engine import Classifier
from xdpgate.control.classify.rtp import is_rtcp

from .build import first_label, tcp, udp

MAGIC = 0x2112A442


def stun(mtype: int = 0x0001, attrs: list[tuple[int, bytes]] = (), tid: bytes = b"T" * 12,
         cookie: int = MAGIC) -> bytes:
    body = b""
    for at, val in attrs:
        body += struct.pack("!HH", at, len(val)) + val + bytes((4 - len(val) % 4) % 4)
    return struct.pack("!HHI", mtype, len(body), cookie) + tid + body


def rtp(seq: int, ts: int, ssrc: int = 0x1234ABCD, pt: int = 0, size: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + os.urandom(size)


def test_stun_binding_request_on_a_random_port_is_voip(clf):
    lab = first_label(clf, [udp(stun(attrs=[(0x0006, b"user:pass")]), 40000, 50000)])
    assert (lab.category, lab.app) == ("voip", "stun")


def test_stun_with_ms_candidate_identifier_is_teams(clf):
    lab = first_label(clf, [udp(stun(attrs=[(0x8054, b"\x01\x00\x00\x00")]), 50016, 3478)])
    assert (lab.app, lab.category) == ("skype-teams-call", "voip")
    assert lab.reason.startswith("stun-attr:")


def test_libwebrtcs_own_attribute_says_a_webrtc_call_not_whose(clf):
    lab = first_label(clf, [udp(stun(attrs=[(0xC057, b"\x00\x01\x00\x0a")]), 50000, 19305)])
    assert (lab.app, lab.category) == ("stun", "voip")  # Discord, Signal, Messenger send it too
    lab = first_label(Classifier(), [udp(stun(0x0003, [(0xC057, b"\x00\x01\x00\x0a"),
                                                        (0x0014, b"google.com")]), 50000, 19305)])
    assert lab.app == "google-call"


def test_stun_realm_naming_signal_is_signal_call(clf):
    lab = first_label(clf, [udp(stun(0x0003, [(0x0014, b"signal.org")]), 50000, 3478)])
    assert lab.app == "signal-call"


def test_whatsapp_stun_message_type_is_whatsapp_call(clf):
    lab = first_label(clf, [udp(stun(0x0800), 50000, 3478)])
    assert lab.app == "whatsapp-call"


def test_stun_over_tcp_with_rfc4571_framing_is_voip(clf):
    msg = stun(attrs=[(0x8054, b"\x01\x00\x00\x00")])
    lab = first_label(clf, [tcp(struct.pack("!H", len(msg)) + msg, 41000, 443)])
    assert lab.category == "voip"


def test_dns_query_on_port_3478_is_not_stun(clf):
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
    lab = first_label(clf, [udp(q, 40000, 3478)])
    assert lab.app != "stun" and lab.category == "dns"


def test_random_udp_bytes_are_not_labelled(clf):
    rnd = random.Random(7)
    pkts = [udp(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(30, 900))), 40000, 40001,
                ts=i * 0.3) for i in range(4)]
    lab = first_label(clf, pkts)
    assert lab.app == "unknown" and lab.category == "unknown"


def test_rtp_with_continuing_sequence_and_ssrc_is_rtp(clf):
    pkts = [udp(rtp(100 + i, 8000 + 160 * i), 16384, 20000, ts=i * 0.02) for i in range(3)]
    lab = first_label(clf, pkts)
    assert (lab.app, lab.category, lab.reason) == ("rtp", "voip", "rtp-seq-ssrc")


def test_rtp_like_headers_with_changing_ssrc_are_not_rtp(clf):
    pkts = [udp(rtp(100 + i, 8000, ssrc=0x1000 + 7919 * i), 16384, 20000, ts=i * 0.3)
            for i in range(4)]
    lab = first_label(clf, pkts)
    assert lab.category != "voip"


def test_rtcp_receiver_report_is_recognised():
    rr = struct.pack("!BBH", 0x81, 201, 7) + struct.pack("!I", 1) + bytes(24)
    assert is_rtcp(rr)
    assert not is_rtcp(rr[:-4] + b"\x00\x00")  # lengths no longer add up


def test_dtls_after_stun_on_the_same_flow_stays_voip():
    clf = Classifier()
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(8) + struct.pack("!H", 40) + bytes(40)
    lab = first_label(clf, [udp(stun(), 50000, 3478), udp(dtls, 50000, 3478, ts=0.1)])
    assert lab.category == "voip"


def test_media_from_a_socket_that_did_ice_is_a_call_leg():
    clf = Classifier()
    first_label(clf, [udp(stun(attrs=[(0x8054, b"\x01\x00\x00\x00")]), 50016, 3478)])
    lab = clf.feed(udp(os.urandom(120), 50016, 61000, dst="198.51.100.99", ts=1.0))
    assert lab is not None and lab.category == "voip" and lab.reason == "ice-endpoint"


def test_steady_small_encrypted_packets_both_ways_look_like_a_call():
    clf = Classifier()
    rnd = random.Random(3)
    pkts = []
    for i in range(8):
        src, dst, sp, dp = ("10.1.0.2", "192.0.2.10", 40000, 40001)
        if i % 2:
            src, dst, sp, dp = dst, src, dp, sp
        pkts.append(udp(bytes(rnd.getrandbits(8) for _ in range(120 + i)), sp, dp, src=src,
                        dst=dst, ts=(i // 2) * 0.02 + (i % 2) * 0.001))
    lab = first_label(clf, pkts)
    assert (lab.category, lab.reason) == ("voip", "voip-stats")
    assert lab.confidence < 0.5


def test_discord_ip_discovery_is_a_discord_call(clf):
    pl = struct.pack("!HHI", 1, 70, 1234) + bytes(66)
    lab = first_label(clf, [udp(pl, 50000, 50004)])
    assert (lab.app, lab.category) == ("discord", "voip")


def test_udp_media_to_an_address_dns_tied_to_zoom_is_zoom_voip(clf):
    # a DNS answer teaches the classifier that 203.0.113.50 is a zoom.us server
    q = b"\xab\xcd\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x04zoom\x02us\x00\x00\x01\x00\x01"
    ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 50])
    query = q[:2] + b"\x01\x00" + q[4:6] + b"\x00\x00" + q[8:]
    for p in (udp(query, 40000, 53),
              udp(q + ans, 53, 40000, src="192.0.2.10", dst="10.1.0.2", ts=0.01)):
        clf.feed(p)
    assert clf.knowledge.names.get("203.0.113.50") == "zoom.us"
    rnd = random.Random(1)
    pkts = [udp(bytes(rnd.getrandbits(8) for _ in range(900)), 40002, 45000,
                dst="203.0.113.50", ts=1 + i) for i in range(3)]
    for p in pkts:
        assert clf.feed(p) is None
    (key, lab), = [x for x in clf.flush() if x[0].dst == "203.0.113.50"]
    assert (lab.app, lab.category) == ("zoom", "voip")
