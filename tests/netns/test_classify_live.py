"""Stories of the classifier in the live path: samples from XDP, labels back into the flow
table, and app/category rules acting on them."""

from __future__ import annotations

import socket
import time

from tests.netns.traffic import TcpServer, UdpSink, tcp_connect, udp_socket

POLICY = """
default: allow
sets:
  carriers: [203.0.113.0/24, 2001:db8:100::/48]
rules:
  - {name: carriers-voip-ok, match: {ip_set: carriers, category: voip}, action: allow}
  - {name: no-other-voip, match: {category: voip}, action: drop}
"""


def invite(caller_ip: str, media_port: int, to_host: str, call_id: str) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {caller_ip}\r\ns=-\r\nc=IN IP4 {caller_ip}\r\nt=0 0\r\n"
           f"m=audio {media_port} RTP/AVP 0 8\r\n")
    return (f"INVITE sip:bob@{to_host} SIP/2.0\r\nVia: SIP/2.0/UDP {caller_ip}:5062\r\n"
            f"From: <sip:alice@example.org>;tag=1\r\nTo: <sip:bob@{to_host}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


def rtp(seq: int) -> bytes:
    return bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + \
        b"\x12\x34\x56\x78" + b"\xd5" * 160


def wait_for(pred, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_sip_call_from_an_unlicensed_range_is_dropped_from_its_first_media_packet(
        lab, controller_factory):
    ctrl = controller_factory(POLICY)
    media = UdpSink(lab.client_ns, lab.client_ip4, 30000)  # the caller's announced RTP port
    s = udp_socket(lab.client_ns, sport=5062)
    s.sendto(invite(lab.client_ip4, 30000, "example.org", "call-1@x"), (lab.server_ip4, 5070))
    assert wait_for(lambda: any(f["app"] == "sip" for f in ctrl.flows(port=5070))), ctrl.flows()
    sip = [f for f in ctrl.flows(port=5070)][0]
    assert sip["category"] == "voip"
    # the callee's media to the announced port: labelled and dropped from packet one
    r = udp_socket(lab.server_ns, sport=40000)
    for i in range(10):
        r.sendto(rtp(i), (lab.client_ip4, 30000))
    r.close()
    s.close()
    assert media.close() == [], "RTP of an unlicensed call leaked through"
    flows = ctrl.flows(port=30000)
    assert len(flows) == 1
    f = flows[0]
    assert f["app"] == "rtp" and f["category"] == "voip" and f["verdict"] == "drop"
    assert f["pkts_fwd"] == 10
    st = ctrl.stats()
    assert st["events"]["expect_hit"] >= 1
    assert any(c["category"] == "voip" and c["packets"] >= 10 for c in st["categories"])


def test_the_same_call_through_the_carriers_range_passes(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    media = UdpSink(lab.client_ns, lab.client_ip4, 30010)
    s = udp_socket(lab.client_ns, sport=5062)
    s.sendto(invite(lab.client_ip4, 30010, "203.0.113.10", "call-2@x"), (lab.carrier_ip4, 5060))
    assert wait_for(lambda: any(f["app"] == "sip" for f in ctrl.flows(port=5060)))
    # media comes from the carrier's address
    from xdpgate.control.lab import netns_socket

    with netns_socket(lab.server_ns):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind((lab.carrier_ip4, 40010))
    for i in range(10):
        r.sendto(rtp(i), (lab.client_ip4, 30010))
    r.close()
    s.close()
    assert len(media.close()) == 10
    f = ctrl.flows(port=30010)[0]
    assert f["category"] == "voip" and f["verdict"] == "allow"


def test_web_traffic_passes_and_a_bittorrent_handshake_is_labelled_p2p(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    srv = TcpServer(lab.server_ns, lab.server_ip4, 6881)
    web = TcpServer(lab.server_ns, lab.server_ip4, 8080)
    try:
        c = tcp_connect(lab.client_ns, lab.server_ip4, 8080)
        req = b"GET / HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8\r\n\r\n"
        c.sendall(req)
        assert c.recv(len(req)) == req
        c.close()
        bt = tcp_connect(lab.client_ns, lab.server_ip4, 6881)
        hs = b"\x13BitTorrent protocol" + b"\0" * 8 + b"\x11" * 20 + b"-XG0001-" + b"7" * 12
        bt.sendall(hs)
        assert bt.recv(len(hs)) == hs
        assert wait_for(lambda: any(f["category"] == "p2p" for f in ctrl.flows(port=6881)))
        bt.close()
        f = ctrl.flows(port=6881)[0]
        assert f["app"] == "bittorrent"
        w = ctrl.flows(port=8080)[0]
        assert w["category"] == "web" and w["verdict"] == "allow"
    finally:
        srv.close()
        web.close()


def test_a_full_ring_buffer_loses_samples_never_packets_and_the_sampler_catches_up(
        lab, controller_factory):
    from xdpgate.control.layout import Sizes

    ctrl = controller_factory(POLICY, sizes=Sizes(ringbuf_pages=4))
    ctrl.sampler.pause()  # nobody reads: the ring buffer fills
    time.sleep(0.3)
    sink = UdpSink(lab.server_ns, lab.server_ip4, 7000)
    n = 300
    socks = []
    for i in range(n):  # many new flows: one sample each
        s = udp_socket(lab.client_ns, sport=20000 + i)
        s.sendto(b"hello %d" % i, (lab.server_ip4, 7000))
        socks.append(s)
    assert len(sink.close()) == n, "a packet was lost with the sampler stalled"
    ev = ctrl.stats()["events"]
    assert ev["sample_lost"] > 0 and ev["sample_sent"] + ev["sample_lost"] >= n
    # the sampler drains what is buffered and labels new flows again
    before = ctrl.sampler.samples
    ctrl.sampler.resume()
    assert wait_for(lambda: ctrl.sampler.samples > before)
    s = udp_socket(lab.client_ns, sport=5062)
    s.sendto(invite(lab.client_ip4, 30020, "example.org", "call-3@x"), (lab.server_ip4, 5070))
    assert wait_for(lambda: any(f["app"] == "sip" for f in ctrl.flows(port=5070)))
    for x in socks + [s]:
        x.close()
