"""The Prometheus scrape: parses, carries every data-path counter, counts API requests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from xdpgate.control.metrics import Metrics


def scrape(api) -> dict[str, list]:
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(samples, **labels) -> float:
    [s] = [s for s in samples if all(s.labels.get(k) == v for k, v in labels.items())
           and s.name.endswith("_total")] or [s for s in samples
                                              if all(s.labels.get(k) == v
                                                     for k, v in labels.items())]
    return s.value


def test_every_data_path_counter_is_exported_with_labels(api):
    api.post("/api/v1/rules", json={"name": "r1", "action": "drop"})
    m = scrape(api)
    assert value(m["xdpgate_action_packets"], verdict="drop") == 10
    assert value(m["xdpgate_reason_bytes"], reason="default") == 6000
    assert value(m["xdpgate_reason_verdict_packets"], reason="rule", verdict="drop") == 10
    assert value(m["xdpgate_rule_packets"], rule="r1") == 3
    assert value(m["xdpgate_default_packets"]) == 60
    assert value(m["xdpgate_app_bytes"], app="sip") == 2400
    assert value(m["xdpgate_app_flows"], app="sip") == 1
    assert value(m["xdpgate_category_packets"], category="voip") == 18
    assert value(m["xdpgate_tunnel_packets"], tunnel="gtpu") == 2
    assert value(m["xdpgate_call_packets"], call="pstn") == 5
    assert value(m["xdpgate_events"], event="flow_new") == 2
    assert value(m["xdpgate_sampler_dropped"]) == 1
    assert value(m["xdpgate_policy_load_errors"]) == 0
    assert value(m["xdpgate_policy_version"]) == 1
    assert value(m["xdpgate_policy_info"], etag="v1") == 1
    assert value(m["xdpgate_datapath_up"]) == 1


def test_api_requests_are_counted_by_route_template(api):
    api.get("/api/v1/rules/nope")
    api.get("/api/v1/rules/other")
    m = scrape(api)
    assert value(m["xdpgate_api_requests"], route="/api/v1/rules/{name}", method="GET",
                 status="404") == 2


def test_a_failing_data_path_read_shows_as_down_not_as_a_failed_scrape(api, ctl, monkeypatch):
    def boom():
        raise OSError("maps gone")

    monkeypatch.setattr(ctl, "stats", boom)
    m = scrape(api)
    assert value(m["xdpgate_datapath_up"]) == 0 and "xdpgate_api_requests" in m


def test_metrics_live_in_an_injected_registry_and_bind_once(ctl):
    reg = CollectorRegistry()
    m = Metrics(registry=reg)
    m.bind(ctl)
    m.bind(ctl)
    assert reg.get_sample_value("xdpgate_default_packets_total") == 60
