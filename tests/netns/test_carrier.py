"""Carrier stories (issue 6): calls to the phone network only through licensed carriers,
app-to-app calls pass, decided from the first media packet."""

from __future__ import annotations

import pytest

from xdpgate.control import scenario


def test_the_carrier_scenario_passes_pstn_via_carriers_and_app_calls_and_drops_the_rest(
        lab, controller_factory):
    ctrl = controller_factory("default: allow\n")
    lines: list[str] = []
    results = {r.name: r for r in scenario.carrier_scenario(lab, ctrl, echo=lines.append)}
    for name, _, _, _, passes in scenario.CALLS:
        r = results[name]
        if passes:
            assert r.media_delivered == r.media_sent, (name, r)
        else:
            assert r.media_delivered == 0, (name, r)
    assert "call=pstn" in results["pstn-via-other"].label
    assert "call=app" in results["app-to-app"].label
    assert any("DROPPED" in x for x in lines) and any("PASSED" in x for x in lines)
    calls = {c["call"]: c["packets"] for c in ctrl.stats()["calls"]}
    assert calls.get("pstn", 0) >= 20 and calls.get("app", 0) >= 20


@pytest.mark.parametrize("uri", ["tel:+33123456789", "sip:0049301234567@example.org",
                                 "sip:+14155550100@example.org;user=phone"])
def test_a_pstn_call_over_tcp_sip_from_outside_the_carriers_loses_its_media(
        lab, controller_factory, uri):
    ctrl = controller_factory(scenario.CARRIER_POLICY)

    def label_of(port):
        return str(ctrl.flows(port=port))

    r = scenario.place_call(lab, name="tcp-pstn", uri=uri, to=uri, peer=lab.server_ip4,
                            media_port=31100, transport="tcp", label_of=label_of)
    assert r.media_delivered == 0, r
    assert "'call': 'pstn'" in r.label


def test_a_plain_sip_uri_over_tcp_is_an_app_call_and_passes(lab, controller_factory):
    ctrl = controller_factory(scenario.CARRIER_POLICY)
    r = scenario.place_call(lab, name="tcp-app", uri="sip:alice@example.org",
                            to="sip:alice@example.org", peer=lab.server_ip4, media_port=31200,
                            transport="tcp", label_of=lambda p: str(ctrl.flows(port=p)))
    assert r.media_delivered == r.media_sent
    assert "'call': 'app'" in r.label
