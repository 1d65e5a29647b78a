"""SIP, SDP expectations, call kinds, and the other signalling protocols."""

from __future__ import annotations

import pytest

from xdpgate.control.classify.engine import Classifier
from xdpgate.control.classify.sip import is_phone_uri

from .build import SERVER, first_label, tcp, udp


def invite(ruri: str, to: str | None = None, sdp_addr: str = "198.51.100.7",
           media_port: int = 40000) -> bytes:
    body = (f"v=0\r\no=- 1 1 IN IP4 {sdp_addr}\r\ns=-\r\nc=IN IP4 {sdp_addr}\r\nt=0 0\r\n"
            f"m=audio {media_port} RTP/AVP 0 8\r\n").encode()
    to = to or f"<{ruri}>"
    head = (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.2:5060;branch=z9hG4bK1\r\n"
            f"From: <sip:alice@example.org>;tag=1\r\nTo: {to}\r\nCall-ID: abc@10.1.0.2\r\n"
            f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def test_sip_invite_on_a_random_udp_port_is_sip(clf):
    lab = first_label(clf, [udp(invite("sip:bob@example.org"), 40123, 31337)])
    assert (lab.app, lab.category, lab.reason) == ("sip", "voip", "sip-request-line")


def test_sip_invite_over_tcp_on_a_random_port_is_sip(clf):
    lab = first_label(clf, [tcp(invite("sip:bob@example.org"), 40123, 15000)])
    assert (lab.app, lab.category) == ("sip", "voip")


def test_sip_status_line_is_sip(clf):
    msg = b"SIP/2.0 200 OK\r\nCall-ID: x@y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    lab = first_label(clf, [udp(msg, 5060, 5060)])
    assert lab.reason == "sip-status-line"


@pytest.mark.parametrize("make", [udp, tcp])
@pytest.mark.parametrize("ruri,to,kind", [
    ("tel:+14155550123", None, "pstn"),
    ("sip:+14155550123@carrier.example;user=phone", None, "pstn"),
    ("sip:+390212345678@carrier.example", None, "pstn"),
    ("sip:00390212345678@gw.example", None, "pstn"),
    ("sip:gw.example", "<tel:+442071234567>", "pstn"),
    ("sip:alice@example.org", None, "app"),
    ("sip:1001@pbx.example", None, "app"),
])
def test_invite_call_kind_follows_the_phone_number_rules(make, ruri, to, kind):
    clf = Classifier()
    lab = first_label(clf, [make(invite(ruri, to), 5062, 5060)])
    assert (lab.app, lab.call) == ("sip", kind)


def test_phone_uri_rules_reject_short_numbers_and_names():
    assert not is_phone_uri(b"sip:12345@pbx.example")
    assert not is_phone_uri(b"sip:bob@example.org")
    assert is_phone_uri(b"sip:+1-415-555-0123@x.example")


def test_rtp_announced_by_sdp_is_labelled_from_its_first_packet(clf):
    first_label(clf, [udp(invite("tel:+14155550123", sdp_addr="198.51.100.7",
                                 media_port=40000), 5060, 5060)])
    assert any(e.port == 40000 and e.call == "pstn" for e in clf.new_expectations)
    rtp = b"\x80\x00\x00\x01" + b"\x00\x00\x00\xa0" + b"\x12\x34\x56\x78" + bytes(160)
    lab = clf.feed(udp(rtp, 50000, 40000, src="203.0.113.9", dst="198.51.100.7", ts=1.0))
    assert lab is not None, "the first media packet must be decided at once"
    assert (lab.category, lab.reason, lab.call) == ("voip", "sdp-expected", "pstn")


def test_expired_expectation_no_longer_labels(clf):
    first_label(clf, [udp(invite("sip:alice@example.org", media_port=41000), 5060, 5060)])
    clf.expire(now=10_000.0)
    lab = clf.feed(udp(b"\x01" * 40, 50000, 41000, src="203.0.113.9", dst="198.51.100.7",
                       ts=10_000.0))
    assert lab is None


def test_http_request_on_port_5060_is_not_sip(clf):
    lab = first_label(clf, [tcp(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", 40000, 5060)])
    assert lab.app != "sip" and lab.category == "web"


def test_h323_setup_in_tpkt_on_any_port_is_h323(clf):
    q931 = bytes([0x08, 0x02, 0x00, 0x01, 0x05]) + b"\x04\x03\x80\x90\xa2" + bytes(20)
    tpkt = bytes([3, 0]) + (len(q931) + 4).to_bytes(2, "big") + q931
    lab = first_label(clf, [tcp(tpkt, 40000, 12345)])
    assert (lab.app, lab.category) == ("h323", "voip")


def test_mgcp_command_is_mgcp(clf):
    lab = first_label(clf, [udp(b"RQNT 1201 aaln/1@rgw.example MGCP 1.0\r\nX: 0123\r\n",
                                2727, 2427)])
    assert (lab.app, lab.category) == ("mgcp", "voip")


def test_iax2_new_is_iax(clf):
    new = bytes([0x80, 0x01, 0x00, 0x00]) + bytes(4) + bytes([0, 0, 6, 1]) + b"\x0b\x02\x00\x02"
    lab = first_label(clf, [udp(new, 4569, 4569)])
    assert (lab.app, lab.category) == ("iax", "voip")


def test_teamspeak3_init_is_teamspeak(clf):
    lab = first_label(clf, [udp(b"TS3INIT1\x00\x65\x00\x00\x88" + bytes(20), 50000, 9987)])
    assert (lab.app, lab.category) == ("teamspeak", "voip")


def test_sip_labels_carry_no_call_kind_without_an_invite(clf):
    msg = (b"REGISTER sip:example.org SIP/2.0\r\nCall-ID: r1@h\r\nCSeq: 1 REGISTER\r\n"
           b"Content-Length: 0\r\n\r\n")
    lab = first_label(clf, [udp(msg, 5060, 5060, dst=SERVER)])
    assert lab.call == "none"
