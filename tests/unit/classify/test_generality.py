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
