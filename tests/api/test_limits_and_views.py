"""Bounded bodies, read-only views (status, interfaces, flows, stats, classes)."""

from __future__ import annotations

import pytest

from xdpgate.api.app import create_app

TEXT = {"Content-Type": "text/plain"}


@pytest.fixture
def small(ctl, tokens):
    from .conftest import _client

    return _client(create_app(ctl, tokens, max_body=1000), tokens.admin)


def test_a_body_over_the_limit_is_413_and_nothing_changes(small, ctl):
    r = small.put("/api/v1/sets/s", content=b"10.0.0.0/8\n" * 200, headers=TEXT)
    assert r.status_code == 413 and "limit is 1000 bytes" in r.json()["detail"]
    r = small.put("/api/v1/policy", json={"rules": [{"name": f"r{i}", "action": "drop"}
                                                    for i in range(100)]})
    assert r.status_code == 413
    assert ctl.policy_version == 0


def test_a_streamed_body_without_length_is_cut_off_at_the_limit(small, ctl):
    def chunks():
        for _ in range(100):
            yield b"10.0.0.0/8\n" * 10

    r = small.put("/api/v1/sets/s", content=chunks(), headers=TEXT)
    assert r.status_code == 413
    assert ctl.policy_version == 0


def test_status_says_version_policy_and_interfaces(api, ctl):
    assert api.post("/api/v1/interfaces", json={"name": "veth1", "mode": "skb"}).status_code == 201
    s = api.get("/api/v1/status").json()
    assert s["version"] == ctl.version and s["policy_version"] == 0 and s["etag"] == '"v0"'
    assert s["interfaces"] == [{"name": "veth1", "ifindex": 7, "mode": "skb", "netns": None}]


def test_interfaces_attach_and_detach(api):
    assert api.get("/api/v1/interfaces").json() == []
    r = api.post("/api/v1/interfaces", json={"name": "eth9"})
    assert r.status_code == 409 and "No such device" in r.json()["detail"]
    assert api.post("/api/v1/interfaces", json={"name": "veth1"}).json()["mode"] == "native"
    assert api.delete("/api/v1/interfaces/veth1").status_code == 204
    assert api.delete("/api/v1/interfaces/veth1").status_code == 404
    assert api.post("/api/v1/interfaces", json={"name": "a/b"}).status_code == 422
    assert api.post("/api/v1/interfaces", json={"name": "veth1", "mode": "x"}).status_code == 422


def test_flows_filter_sort_and_bound_the_limit(api):
    assert len(api.get("/api/v1/flows").json()) == 2
    rows = api.get("/api/v1/flows", params={"app": "whatsapp", "verdict": "drop"}).json()
    assert [f["dport"] for f in rows] == [443]
    assert api.get("/api/v1/flows", params={"limit": 1}).json()[0]["app"] == "sip"
    for bad in ({"limit": 0}, {"limit": 10**6}, {"port": 70000}, {"ip": "10.0.0.300"},
                {"category": "nope"}, {"sort": "colour"}, {"verdict": "maybe"}, {"x": 1}):
        r = api.get("/api/v1/flows", params=bad)
        assert r.status_code == 422, bad
        if "x" not in bad:
            assert r.json()["detail"][0]["loc"] == ["query", next(iter(bad))]


def test_stats_and_classes(api):
    s = api.get("/api/v1/stats").json()
    assert s["by_action"]["drop"]["packets"] == 10 and s["events"]["sample_lost"] == 1
    c = api.get("/api/v1/classes").json()
    assert "voip" in c["categories"] and "sip" in c["apps"] and "pstn" in c["calls"]


def test_an_unhandled_controller_bug_is_a_500_without_a_traceback(api, ctl, monkeypatch):
    monkeypatch.setattr(ctl, "stats", lambda: 1 / 0)
    r = api.get("/api/v1/stats")
    assert r.status_code == 500 and "Traceback" not in r.text and "ZeroDivision" not in r.text


def test_a_data_path_read_failure_is_503(api, ctl, monkeypatch):
    from xdpgate.control.errors import XgError

    def boom(**kw):
        raise XgError("read", "the flow table", "Bad file descriptor")

    monkeypatch.setattr(ctl, "flows", boom)
    r = api.get("/api/v1/flows")
    assert r.status_code == 503 and "flow table" in r.json()["detail"]
