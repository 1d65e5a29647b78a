"""Stories over real traffic: namespaces joined by veth pairs, xdpgate on the gateway."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.netns.traffic import TcpServer, UdpSink, lab_addrs, tcp_connect, udp_socket
from xdpgate.control import loader

POLICY = """
default: allow
sets:
  blocked: [10.77.1.2/32, fd00:77:1::2/128]
rules:
  - {name: no-udp-7001, match: {proto: udp, dst_port: 7001}, action: drop}
  - {name: no-tcp-8081, match: {proto: tcp, dst_port: 8081}, action: drop}
  - {name: blocked-to-7002, match: {src_set: blocked, dst_port: 7002}, action: drop}
"""


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_udp_to_a_dropped_port_never_arrives_while_other_ports_do(lab, controller_factory, v6):
    ctrl = controller_factory(POLICY)
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    client, server = lab_addrs(lab, v6)
    ok, bad, blk = (UdpSink(lab.server_ns, server, p) for p in (7000, 7001, 7002))
    s = udp_socket(lab.client_ns, fam)
    for i in range(20):
        for port in (7000, 7001, 7002):
            s.sendto(b"p%d" % i, (server, port))
    s.close()
    assert len(ok.close()) == 20
    assert bad.close() == []
    assert blk.close() == []
    st = ctrl.stats()
    hits = {r["name"]: r["packets"] for r in st["rules"]}
    assert hits["no-udp-7001"] == 20 and hits["blocked-to-7002"] == 20
    assert st["by_action"]["drop"]["packets"] >= 40


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_tcp_connect_to_a_dropped_port_times_out_and_others_connect(lab, controller_factory, v6):
    controller_factory(POLICY)
    _, server = lab_addrs(lab, v6)
    good, bad = TcpServer(lab.server_ns, server, 8080), TcpServer(lab.server_ns, server, 8081)
    try:
        c = tcp_connect(lab.client_ns, server, 8080)
        c.sendall(b"hello")
        assert c.recv(5) == b"hello"
        c.close()
        with pytest.raises((TimeoutError, OSError)):
            tcp_connect(lab.client_ns, server, 8081, timeout=1.0)
        assert bad.accepted == 0
    finally:
        good.close()
        bad.close()


def test_both_directions_of_a_tcp_connection_share_one_flow_entry(lab, controller_factory):
    ctrl = controller_factory(POLICY)
    srv = TcpServer(lab.server_ns, lab.server_ip4, 8080)
    try:
        c = tcp_connect(lab.client_ns, lab.server_ip4, 8080)
        c.sendall(b"x" * 1000)
        c.recv(1000)
        c.close()
        time.sleep(0.2)
        flows = [f for f in ctrl.flows(port=8080) if f["l4"] == "tcp"]
        assert len(flows) == 1
        f = flows[0]
        assert (f["src"], f["dst"], f["dport"]) == (lab.client_ip4, lab.server_ip4, 8080)
        assert f["pkts_fwd"] >= 3 and f["pkts_rev"] >= 2
        assert "S" in f["tcp_flags"].split("/")[0] and "S" in f["tcp_flags"].split("/")[1]
    finally:
        srv.close()


def test_a_policy_change_applies_without_reattaching_and_without_a_gap(lab, controller_factory):
    """Flip between two policies that both drop port 7001 while it is flooded: nothing
    to 7001 ever arrives, traffic to 7000 keeps arriving, and the program is never swapped."""
    ctrl = controller_factory(POLICY)
    _, prog_before, _ = loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)
    other = POLICY.replace("no-tcp-8081", "no-tcp-8082").replace("8081", "8082")
    ok, bad = UdpSink(lab.server_ns, lab.server_ip4, 7000), UdpSink(lab.server_ns, lab.server_ip4, 7001)
    stop = threading.Event()
    sent = [0]

    def blast() -> None:
        s = udp_socket(lab.client_ns)
        while not stop.is_set():
            s.sendto(b"a", (lab.server_ip4, 7000))
            s.sendto(b"b", (lab.server_ip4, 7001))
            sent[0] += 1
        s.close()

    t = threading.Thread(target=blast)
    t.start()
    try:
        from xdpgate.control import policy as pol

        a, b = pol.from_yaml(other), pol.from_yaml(POLICY)
        for i in range(30):
            ctrl.apply_policy(a if i % 2 == 0 else b, actor="test")
    finally:
        stop.set()
        t.join()
    assert bad.close() == []
    got = ok.close()
    assert len(got) > 0 and sent[0] > 0
    _, prog_after, _ = loader.xdp_state(lab.gw_ifaces[0], lab.gw_ns)
    assert prog_before == prog_after != 0
    assert ctrl.policy_version >= 31
