"""All of xdpgate's Prometheus metrics in one class, on an injectable registry.

Data-path counters are not polled: a custom collector reads `controller.stats()` and
`controller.status()` once per scrape (the controller sums per-CPU cells in batches).
The API's own request counters are ordinary prometheus-client metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, Metric)
from prometheus_client.registry import Collector

log = logging.getLogger("xdpgate.metrics")

# (stats key, label name, metric stem, what) for the per-dimension packet/byte lists
_DIMS = (
    ("apps", "app", "app", "by classified application"),
    ("categories", "category", "category", "by application category"),
    ("tunnels", "tunnel", "tunnel", "by tunnel type"),
    ("calls", "call", "call", "by call kind"),
)


def _pb(v: Any) -> tuple[int, int]:
    """(packets, bytes) from {packets, bytes} or a bare packet count."""
    if isinstance(v, dict):
        return int(v.get("packets", 0)), int(v.get("bytes", 0))
    return int(v or 0), 0


def _pair(stem: str, what: str, labels: list[str]) -> tuple[CounterMetricFamily,
                                                           CounterMetricFamily]:
    return (CounterMetricFamily(f"xdpgate_{stem}_packets", f"Packets {what}", labels=labels),
            CounterMetricFamily(f"xdpgate_{stem}_bytes", f"Bytes {what}", labels=labels))


def stats_families(stats: dict[str, Any], status: dict[str, Any] | None) -> Iterator[Metric]:
    """The metric families for one snapshot of controller.stats() (and status())."""
    for key, label, what in (("by_action", "verdict", "by data-path verdict"),
                             ("by_reason", "reason", "by the reason for the verdict")):
        pk, by = _pair(key.removeprefix("by_"), what, [label])
        for name, v in sorted(stats.get(key, {}).items()):
            p, b = _pb(v)
            pk.add_metric([name], p)
            by.add_metric([name], b)
        yield pk
        yield by
    pk, by = _pair("reason_verdict", "by reason and verdict", ["reason", "verdict"])
    for row in stats.get("by_reason_action", []):
        pk.add_metric([row["reason"], row["verdict"]], row.get("packets", 0))
        by.add_metric([row["reason"], row["verdict"]], row.get("bytes", 0))
    yield pk
    yield by
    pk, by = _pair("rule", "matched by each rule", ["rule"])
    for row in stats.get("rules", []):
        pk.add_metric([row["name"]], row.get("packets", 0))
        by.add_metric([row["name"]], row.get("bytes", 0))
    yield pk
    yield by
    p, b = _pb(stats.get("default", {}))
    yield CounterMetricFamily("xdpgate_default_packets", "Packets decided by the default action",
                              value=p)
    yield CounterMetricFamily("xdpgate_default_bytes", "Bytes decided by the default action",
                              value=b)
    for key, label, stem, what in _DIMS:
        pk, by = _pair(stem, what, [label])
        flows = GaugeMetricFamily(f"xdpgate_{stem}_flows", f"Labelled flows {what}", labels=[label])
        for row in stats.get(key, []):
            lv = str(row.get(label, row.get("name", "")))
            pk.add_metric([lv], row.get("packets", 0))
            by.add_metric([lv], row.get("bytes", 0))
            if "flows" in row:
                flows.add_metric([lv], row["flows"])
        yield pk
        yield by
        if flows.samples:
            yield flows
    ev = CounterMetricFamily("xdpgate_events", "Data-path events (flow_new, sample_sent, "
                             "sample_lost, ...)", labels=["event"])
    for name, n in sorted(stats.get("events", {}).items()):
        ev.add_metric([name], n)
    yield ev
    events = stats.get("events", {})
    sampler = stats.get("sampler", {})
    yield CounterMetricFamily("xdpgate_sampler_dropped", "Packet samples the data path could not "
                              "hand to the classifier (ring full)",
                              value=sampler.get("lost", events.get("sample_lost", 0)))
    if "errors" in sampler:
        yield CounterMetricFamily("xdpgate_sampler_errors", "Samples the classifier failed on",
                                  value=sampler["errors"])
    yield CounterMetricFamily("xdpgate_policy_load_errors", "Policies refused (bad file, bad "
                              "API input, kernel refusal); the running policy stayed",
                              value=stats.get("policy_load_errors", 0))
    if status is not None:
        yield GaugeMetricFamily("xdpgate_policy_version", "Version of the running policy",
                                value=status.get("policy_version", 0))
        yield InfoMetricFamily("xdpgate_policy", "The running policy's ETag",
                               value={"etag": str(status.get("etag", "")).strip('"')})
        yield InfoMetricFamily("xdpgate_build", "xdpgate's version and instance",
                               value={"version": str(status.get("version", "")),
                                      "instance": str(status.get("instance") or "")})
        yield GaugeMetricFamily("xdpgate_uptime_seconds", "Seconds since the controller started",
                                value=status.get("uptime_s", 0))
        att = GaugeMetricFamily("xdpgate_interface_attached", "1 per interface the filter is on",
                                labels=["interface", "mode", "netns"])
        for i in status.get("interfaces", []):
            att.add_metric([i["name"], str(i.get("mode", "")), str(i.get("netns") or "")], 1)
        yield att


class _ControllerCollector(Collector):
    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: families depend on the snapshot

    def collect(self) -> Iterable[Metric]:
        ok = 1
        out: list[Metric] = []
        try:
            out = list(stats_families(self.controller.stats(), self.controller.status()))
        except Exception as e:  # a scrape reports the failure instead of failing
            log.warning("couldn't read the data path's counters: %s", e)
            ok = 0
        yield from out
        yield GaugeMetricFamily("xdpgate_datapath_up", "1 if the last scrape read the data "
                                "path's counters", value=ok)


class Metrics:
    """xdpgate's metrics. `Metrics(controller)` exports its counters at scrape time."""

    def __init__(self, controller: Any = None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.api_requests = Counter("xdpgate_api_requests", "REST API requests",
                                    ["route", "method", "status"], registry=self.registry)
        self.api_latency = Histogram("xdpgate_api_request_seconds", "REST API request latency",
                                     ["route", "method"], registry=self.registry,
                                     buckets=(.001, .005, .01, .05, .1, .5, 1, 5, 30))
        self._bound: Any = None
        if controller is not None:
            self.bind(controller)

    def bind(self, controller: Any) -> None:
        """Export this controller's counters (once; binding the same one again is a no-op)."""
        if self._bound is controller:
            return
        if self._bound is not None:
            raise ValueError("these metrics already export another controller's counters")
        self.registry.register(_ControllerCollector(controller))
        self._bound = controller

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.api_requests.labels(route, method, str(status)).inc()
        self.api_latency.labels(route, method).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """(exposition text, content type) for a scrape."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
