"""The REST API driving the real data path in a namespace lab (root; fails, never skips).

client ns -> gateway (xdpgate on both veths) -> server ns; rules are added and removed
over HTTP with the admin token, and real sockets show what the data path does.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from tests.netns.traffic import TcpServer, UdpSink, tcp_connect, udp_socket
from xdpgate.api.app import create_app
from xdpgate.api.auth import ensure_tokens
from xdpgate.api.server import serve
from xdpgate.control.client import Client
from xdpgate.control.lab import Lab

pytestmark = pytest.mark.privileged


@pytest.fixture
def live(tmp_path):
    """A lab, a started controller on its gateway, and an admin client over real HTTP."""
    from xdpgate.control.controller import Controller, RunConfig

    assert os.geteuid() == 0, "the live API tests need root (CI runs as root)"
    lab = Lab.create("xa" + secrets.token_hex(3))
    ctl = srv = None
    try:
        pfile = tmp_path / "policy.yaml"
        pfile.write_text("default: allow\n")
        ctl = Controller(RunConfig(ifaces=lab.gw_ifaces, policy_file=pfile,
                                   state_dir=tmp_path / "state", netns=lab.gw_ns,
                                   instance=lab.prefix, classify=False))
        ctl.start()
        tokens = ensure_tokens(ctl.state_dir)
        srv = serve(create_app(ctl, tokens), "127.0.0.1:0")
        with Client(srv.url, tokens.admin) as c:
            yield lab, ctl, c
    finally:
        if srv is not None:
            srv.stop()
        if ctl is not None:
            ctl.stop(keep=False)
        lab.destroy()


def send_udp(lab: Lab, port: int, n: int = 20, gap: float = 0.0) -> int:
    sink = UdpSink(lab.server_ns, lab.server_ip4, port)
    s = udp_socket(lab.client_ns)
    try:
        for i in range(n):
            s.sendto(b"x%d" % i, (lab.server_ip4, port))
            if gap:
                time.sleep(gap)
    finally:
        s.close()
    return len(sink.close())


def test_a_rule_added_over_rest_drops_the_traffic_and_deleting_it_lets_it_pass(live):
    lab, ctl, c = live
    assert send_udp(lab, 5060) == 20
    c.add_rule({"name": "no-sip", "match": {"proto": "udp", "dst_port": 5060},
                "action": "drop"})
    assert send_udp(lab, 5060) == 0
    assert send_udp(lab, 5070) == 20  # other traffic untouched
    hits = {r["name"]: r["packets"] for r in c.stats()["rules"]}
    assert hits["no-sip"] >= 20
    c.delete_rule("no-sip")
    assert send_udp(lab, 5060) == 20


def test_a_set_loaded_over_rest_blocks_its_sources(live):
    lab, ctl, c = live
    c.put_set("blocked", f"{lab.client_ip4}/32\n198.51.100.0/24\n")
    c.add_rule({"name": "bl", "match": {"src_set": "blocked"}, "action": "drop"})
    assert send_udp(lab, 4000) == 0
    c.remove_set_entries("blocked", [f"{lab.client_ip4}/32"])
    assert send_udp(lab, 4000) == 20


def test_entries_added_to_and_removed_from_a_big_blocklist_act_at_once_and_stay_on_disk(live):
    """A 5,000-entry blocklist (kept as a file in the state dir) edited a few entries at a
    time: each edit is enforced when the call returns, and the set file stays the set."""
    lab, ctl, c = live
    big = [f"198.18.{i // 250}.{i % 250 + 1}/32" for i in range(5000)]
    assert c.put_set("blocked", "\n".join(big) + "\n") == 5000
    c.add_rule({"name": "bl", "match": {"src_set": "blocked"}, "action": "drop"})
    assert send_udp(lab, 4000) == 20
    assert c.add_set_entries("blocked", [f"{lab.client_ip4}/32", big[0]]) == 5001
    assert send_udp(lab, 4000) == 0
    assert c.remove_set_entries("blocked", [big[1], f"{lab.client_ip4}/32"]) == 4999
    assert send_udp(lab, 4000) == 20
    assert c.add_set_entries("blocked", [f"{lab.client_ip4}/32"]) == 5000
    assert send_udp(lab, 4000) == 0
    want = [b for b in big if b != big[1]] + [f"{lab.client_ip4}/32"]
    assert c.get_set("blocked") == want
    assert ctl.state.set_file("blocked").read_text().split() == want
    assert ctl.applier.last.lpm_touched is not None  # the edits went the incremental way
    # the file's first, last and a middle line go; a line that ends another stays there
    assert c.add_set_entries("blocked", ["8.18.0.4/32"]) == 5001
    assert c.remove_set_entries("blocked", [big[0], "8.18.0.4/32", f"{lab.client_ip4}/32",
                                            big[2]]) == 4997
    want = [b for b in want if b not in (big[0], big[2], f"{lab.client_ip4}/32")]
    assert ctl.state.set_file("blocked").read_text().split() == want == c.get_set("blocked")
    assert "198.18.0.4/32" in want
    # one parsed copy of the set file is kept, not one per edit
    assert sum(k[0] == "file" for k in ctl._resolved) == 1
    # a set written in the policy may repeat an entry: an edit leaves it once
    policy, etag = c.get_policy()
    policy["sets"]["dup"] = ["192.0.2.1/32", "192.0.2.1/32"]
    c.put_policy(policy, etag)
    assert c.add_set_entries("dup", ["192.0.2.2/32"]) == 2
    assert c.get_set("dup") == ["192.0.2.1/32", "192.0.2.2/32"]


def test_reject_makes_a_tcp_connect_fail_fast_with_rst(live):
    lab, ctl, c = live
    srv = TcpServer(lab.server_ns, lab.server_ip4, 2323)
    try:
        tcp_connect(lab.client_ns, lab.server_ip4, 2323).close()
        c.add_rule({"name": "no-telnet", "match": {"proto": "tcp", "dst_port": 2323},
                    "action": "reject"})
        t = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            tcp_connect(lab.client_ns, lab.server_ip4, 2323, timeout=5)
        assert time.monotonic() - t < 1.0
    finally:
        srv.close()


def test_a_pps_rate_limit_holds_a_flow_near_its_limit(live):
    lab, ctl, c = live
    c.add_rule({"name": "cap", "match": {"proto": "udp", "dst_port": 6000},
                "action": "rate_limit", "rate_limit": {"pps": 50, "per": "flow", "burst": 10}})
    t = time.monotonic()
    got = send_udp(lab, 6000, n=400, gap=0.0025)  # ~400 pps for ~1 s
    secs = time.monotonic() - t
    assert 0 < got <= 50 * secs + 10 + 15, (got, secs)
    assert c.stats()["by_reason"]["rate_limit"]["packets"] >= 400 - got - 5


def test_flows_and_metrics_report_the_real_data_path(live):
    lab, ctl, c = live
    send_udp(lab, 7000, n=5)
    flows = c.flows(port=7000)
    assert flows and flows[0]["dport"] == 7000 and flows[0]["pkts_fwd"] >= 5
    text = c.metrics()
    assert 'xdpgate_action_packets_total{verdict="pass"}' in text
    assert "xdpgate_datapath_up 1.0" in text
    st = c.status()
    assert {i["name"] for i in st["interfaces"]} == set(lab.gw_ifaces)


def test_after_a_big_set_is_loaded_the_standby_bank_catches_up_by_itself(live):
    """A 12,000-entry blocklist put to use lands in one bank. Without any further call the
    controller brings the other bank up to it, so the next edit writes only itself (a
    handful of prefixes, not 12,000 again) and is enforced when the call returns."""
    lab, ctl, c = live
    big = [f"198.18.{i // 250}.{i % 250 + 1}/32" for i in range(12000)]
    assert c.put_set("blocked", "\n".join(big) + "\n") == 12000
    c.add_rule({"name": "bl", "match": {"src_set": "blocked"}, "action": "drop"})
    ap = ctl.applier
    deadline = time.monotonic() + 60
    while ap.needs_catch_up() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ap.needs_catch_up(), "the standby bank was not brought up to date"
    with ap.lock:
        assert ap.banks[ap.active_bank() ^ 1].lpm is ap.last.lpm
    written = []
    m = ctl.filter.maps["pfx4"]
    orig = m.set_many_raw

    def counted(keys, vals, n):
        written.append(n)
        return orig(keys, vals, n)

    m.set_many_raw = counted
    assert send_udp(lab, 4000) == 20
    assert c.add_set_entries("blocked", [f"{lab.client_ip4}/32"]) == 12001
    assert send_udp(lab, 4000) == 0
    assert 0 < sum(written) <= 4, written


def test_the_heartbeat_goes_on_while_a_long_policy_load_holds_the_controller(live):
    """Loading millions of prefixes holds the controller (and the applier) for seconds; the
    data path must not take the controller for away meanwhile, or a fail-closed link would
    drop its new flows for the length of every big blocklist reload."""
    from xdpgate.control.controller import AWAY_NS, HEARTBEAT_S

    lab, ctl, c = live
    with ctl.lock, ctl.applier.lock:  # what a long apply holds
        before = ctl.applier.config().heartbeat_ns
        time.sleep(AWAY_NS / 1e9 + 2 * HEARTBEAT_S)
        beat = ctl.applier.config().heartbeat_ns
        assert beat > before
        assert time.clock_gettime_ns(time.CLOCK_MONOTONIC) - beat < AWAY_NS


def test_stats_and_metrics_answer_while_a_long_policy_load_holds_the_controller(live):
    """A scrape during a big blocklist load gets its answer at once, not when the load is
    done (a million prefixes hold the controller for seconds)."""
    import concurrent.futures

    lab, ctl, c = live
    send_udp(lab, 7001, n=3)
    # the pool outermost: the locks are let go before it waits for its threads
    with concurrent.futures.ThreadPoolExecutor(2) as pool, ctl.lock, ctl.applier.lock:
        stats, metrics = pool.submit(c.stats), pool.submit(c.metrics)
        assert stats.result(timeout=5)["by_action"]["pass"]["packets"] >= 3
        assert "xdpgate_default_packets" in metrics.result(timeout=5)
