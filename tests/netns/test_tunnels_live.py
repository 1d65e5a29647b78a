"""Tunnels on a real link (issue 6): a VXLAN link between two namespaces across the
filtered gateway, and GRE and GTP-U frames built with scapy and sent with packet sockets.
Policy applies to the inner flows."""

from __future__ import annotations

import socket
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.contrib.gtp import GTP_U_Header

from tests.netns.traffic import UdpSink, udp_socket
from xdpgate.control.lab import netns_socket

POLICY = """
default: allow
rules:
  - {name: inner-9000, match: {proto: udp, dst_port: 9000}, action: drop}
  - {name: vni-42-9002, match: {tunnel: vxlan, tunnel_id: 42, dst_port: 9002}, action: drop}
  - {name: gtp-teid-7, match: {tunnel: gtpu, tunnel_id: 7}, action: drop}
"""


def vxlan_link(lab) -> None:
    for ns, local, remote, inner, mac in (
        (lab.client_ns, lab.client_ip4, lab.server_ip4, "192.168.42.1/24", "02:42:00:00:00:01"),
        (lab.server_ns, lab.server_ip4, lab.client_ip4, "192.168.42.2/24", "02:42:00:00:00:02"),
    ):
        lab.exec(ns, "ip", "link", "add", "vx42", "address", mac, "type", "vxlan", "id", "42",
                 "local", local, "remote", remote, "dstport", "4789")
        lab.exec(ns, "ip", "addr", "add", inner, "dev", "vx42")
        lab.exec(ns, "ip", "link", "set", "vx42", "up")
    lab.exec(lab.client_ns, "ip", "neigh", "replace", "192.168.42.2", "lladdr", "02:42:00:00:00:02",
             "dev", "vx42", "nud", "permanent")
    lab.exec(lab.server_ns, "ip", "neigh", "replace", "192.168.42.1", "lladdr", "02:42:00:00:00:01",
             "dev", "vx42", "nud", "permanent")


def test_inner_flows_of_a_vxlan_link_are_policed_and_counted(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    vxlan_link(lab)
    sinks = {p: UdpSink(lab.server_ns, "192.168.42.2", p) for p in (9000, 9001, 9002)}
    s = udp_socket(lab.client_ns)
    for i in range(10):
        for p in sinks:
            s.sendto(b"v%d" % i, ("192.168.42.2", p))
    s.close()
    got = {p: len(k.close()) for p, k in sinks.items()}
    assert got == {9000: 0, 9001: 10, 9002: 0}
    flows = [f for f in ctrl.flows(limit=1000) if f["tunnel"] == "vxlan"]
    by_port = {f["dport"]: f for f in flows}
    assert set(by_port) >= {9000, 9001, 9002}
    f = by_port[9001]
    assert f["tunnel_id"] == 42 and f["src"] == "192.168.42.1"
    assert {f["outer_src"], f["outer_dst"]} == {lab.client_ip4, lab.server_ip4}
    assert by_port[9000]["verdict"] == "drop" and by_port[9001]["verdict"] == "allow"
    tun = {t["tunnel"]: t["packets"] for t in ctrl.stats()["tunnels"]}
    assert tun.get("vxlan", 0) >= 30


class FrameTap:
    """Counts frames arriving on the server's interface (AF_PACKET), by a predicate."""

    def __init__(self, ns: str, ifname: str) -> None:
        with netns_socket(ns):
            self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.s.bind((ifname, 0))
        self.s.settimeout(0.2)

    def collect(self, seconds: float = 0.8) -> list[bytes]:
        out = []
        end = time.time() + seconds
        while time.time() < end:
            try:
                data, addr = self.s.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] != socket.PACKET_OUTGOING:  # arrivals only, not the server's replies
                out.append(data)
        self.s.close()
        return out


def send_frames(lab, frames: list[bytes]) -> None:
    with netns_socket(lab.client_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((lab.client_if, 0))
    for f in frames:
        s.send(f)
    s.close()


def outer(lab) -> Ether:
    return Ether(src="02:77:00:00:00:01", dst="02:77:00:00:00:02") / \
        IP(src=lab.client_ip4, dst=lab.server_ip4, ttl=64)


def inner_dports(frames: list[bytes], kind: str) -> list[int]:
    out = []
    for raw in frames:
        p = Ether(raw)
        if kind == "gre" and p.haslayer(GRE) and p[GRE].haslayer(UDP):
            out.append(p[GRE][UDP].dport)
        if kind == "gtp" and p.haslayer(GTP_U_Header) and p[GTP_U_Header].haslayer(UDP):
            out.append(p[GTP_U_Header][UDP].dport)
    return out


def test_gre_frames_are_opened_and_their_inner_flows_policed(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    tap = FrameTap(lab.server_ns, lab.server_if)
    frames = []
    for key in (100, 200):  # two subscribers with the same inner addresses
        for dport in (9000, 9001):
            for _ in range(5):
                frames.append(bytes(outer(lab) / GRE(key_present=1, key=key, seqnum_present=1,
                                                     sequence_number=1) /
                                    IP(src="10.200.0.1", dst="10.200.0.2") /
                                    UDP(sport=5555, dport=dport) / b"payload"))
    send_frames(lab, frames)
    ports = inner_dports(tap.collect(), "gre")
    assert ports.count(9000) == 0 and ports.count(9001) == 10
    gre = [f for f in ctrl.flows(limit=1000) if f["tunnel"] == "gre"]
    assert {(f["tunnel_id"], f["dport"]) for f in gre} == {(100, 9000), (100, 9001), (200, 9000),
                                                          (200, 9001)}


def test_gtpu_frames_are_opened_and_a_teid_can_be_blocked(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    tap = FrameTap(lab.server_ns, lab.server_if)
    frames = []
    for teid in (7, 8):
        for dport in (9000, 9001):
            for _ in range(5):
                frames.append(bytes(outer(lab) / UDP(sport=2152, dport=2152) /
                                    GTP_U_Header(teid=teid, gtp_type=255) /
                                    IP(src="100.64.0.9", dst="192.0.2.80") /
                                    UDP(sport=6000, dport=dport) / b"subscriber"))
    send_frames(lab, frames)
    ports = inner_dports(tap.collect(), "gtp")
    assert ports.count(9000) == 0  # inner rule
    assert ports.count(9001) == 5  # only TEID 8: TEID 7 is blocked whole
    tun = {t["tunnel"]: t["packets"] for t in ctrl.stats()["tunnels"]}
    assert tun.get("gtpu", 0) == 20
