"""The policy as a whole (ETag / If-Match) and rule by rule (order, placement, errors)."""

from __future__ import annotations

from xdpgate.control.errors import XgError

SIP = {"name": "no-sip", "match": {"proto": ["udp"], "dst_port": "5060-5061"}, "action": "drop"}


def names(api):
    return [r["name"] for r in api.get("/api/v1/rules").json()]


def add(api, name, **params):
    r = api.post("/api/v1/rules", json={"name": name, "action": "drop"}, params=params)
    assert r.status_code == 201, r.text
    return r.json()


def test_policy_reads_with_an_etag_that_a_write_must_match(api):
    r = api.get("/api/v1/policy")
    etag = r.headers["etag"]
    assert r.json()["default"] == "allow"
    body = {"default": "drop", "rules": [SIP]}
    ok = api.put("/api/v1/policy", json=body, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.json()["etag"] == ok.headers["etag"] != etag
    stale = api.put("/api/v1/policy", json={"default": "allow"}, headers={"If-Match": etag})
    assert stale.status_code == 412 and "changed" in stale.json()["detail"]
    assert api.get("/api/v1/policy").json()["default"] == "drop"


def test_if_match_takes_bare_weak_and_star_forms(api):
    etag = api.get("/api/v1/policy").headers["etag"]
    assert api.put("/api/v1/policy", json={}, headers={"If-Match": etag.strip('"')}).status_code == 200
    etag = api.get("/api/v1/policy").headers["etag"]
    assert api.put("/api/v1/policy", json={}, headers={"If-Match": "W/" + etag}).status_code == 200
    assert api.put("/api/v1/policy", json={}, headers={"If-Match": "*"}).status_code == 200


def test_two_operators_editing_rules_cannot_overwrite_each_other(api):
    etag = api.get("/api/v1/rules").headers["etag"]
    first = api.post("/api/v1/rules", json=SIP, headers={"If-Match": etag})
    assert first.status_code == 201
    second = api.post("/api/v1/rules", json={**SIP, "name": "other"}, headers={"If-Match": etag})
    assert second.status_code == 412
    assert names(api) == ["no-sip"]


def test_a_bad_policy_names_the_field_and_changes_nothing(api, ctl):
    before = ctl.get_policy()
    bad = {"rules": [{"name": "x", "match": {"dst_port": 70000}, "action": "drop"}]}
    r = api.put("/api/v1/policy", json=bad)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "rules", 0, "match", "dst_port"]
    assert ctl.get_policy() == before


def test_unknown_policy_fields_are_refused_by_name(api):
    r = api.put("/api/v1/policy", json={"defualt": "drop"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "defualt"]


def test_validate_is_a_dry_run_with_warnings(api, ro, ctl):
    v0 = ctl.policy_version
    r = ro.post("/api/v1/policy/validate", json={"default": "drop"})
    assert r.status_code == 200 and r.json()["warnings"]
    assert ctl.policy_version == v0
    r = api.post("/api/v1/policy/validate", json={"sets": {"big": {"file": "/nope.txt"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["sets", "big", "file"]


def test_a_kernel_refusal_is_409_with_its_message_and_the_old_policy_stays(api, ctl):
    ctl.fail_next = XgError("update map", "xg_pfx4", "map is full", "raise --set-max")
    r = api.post("/api/v1/rules", json=SIP)
    assert r.status_code == 409
    assert r.json()["detail"] == "couldn't update map xg_pfx4: map is full; raise --set-max"
    assert names(api) == []


def test_a_rule_is_the_policy_files_rule_and_comes_back_with_its_position(api):
    r = api.post("/api/v1/rules", json=SIP)
    assert r.status_code == 201
    assert r.json() == {**SIP, "position": 0}
    assert api.get("/api/v1/rules/no-sip").json() == {**SIP, "position": 0}
    assert api.get("/api/v1/policy").json()["rules"] == [SIP]


def test_rules_go_last_or_where_they_are_put(api):
    add(api, "a")
    add(api, "c")
    assert add(api, "first", position=0)["position"] == 0
    assert add(api, "b", before="c")["position"] == 2
    assert add(api, "d", after="c")["position"] == 4
    assert names(api) == ["first", "a", "b", "c", "d"]


def test_placement_errors_name_the_query_field(api):
    add(api, "a")
    r = api.post("/api/v1/rules", json={"name": "x", "action": "drop"}, params={"position": 5})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "position"]
    r = api.post("/api/v1/rules", json={"name": "x", "action": "drop"}, params={"before": "zz"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "before"]
    r = api.post("/api/v1/rules", json={"name": "x", "action": "drop"},
                 params={"position": 0, "after": "a"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "after"]
    assert names(api) == ["a"]


def test_replacing_a_rule_keeps_its_place_unless_moved(api):
    for n in ("a", "b", "c"):
        add(api, n)
    r = api.put("/api/v1/rules/b", json={"name": "b", "action": "allow", "match": {"port": 53}})
    assert r.status_code == 200 and r.json()["position"] == 1
    assert api.get("/api/v1/rules/b").json()["action"] == "allow"
    r = api.put("/api/v1/rules/b", json={"name": "b", "action": "allow"}, params={"position": 0})
    assert names(api) == ["b", "a", "c"]
    r = api.put("/api/v1/rules/b", json={"name": "bee", "action": "allow"})
    assert r.status_code == 200 and names(api) == ["bee", "a", "c"]


def test_unknown_rules_are_404_and_duplicates_409(api):
    assert api.get("/api/v1/rules/nope").status_code == 404
    assert api.put("/api/v1/rules/nope", json=SIP).status_code == 404
    assert api.delete("/api/v1/rules/nope").status_code == 404
    add(api, "a")
    r = api.post("/api/v1/rules", json={"name": "a", "action": "allow"})
    assert r.status_code == 409 and "exists" in r.json()["detail"]
    r = api.put("/api/v1/rules/a", json={"name": "a", "action": "allow"})
    assert r.status_code == 200


def test_renaming_onto_another_rule_is_refused(api):
    add(api, "a")
    add(api, "b")
    r = api.put("/api/v1/rules/a", json={"name": "b", "action": "drop"})
    assert r.status_code == 422 and "duplicate" in r.json()["detail"][0]["msg"]
    assert names(api) == ["a", "b"]


def test_deleting_a_rule_returns_the_new_etag(api):
    add(api, "a")
    r = api.delete("/api/v1/rules/a")
    assert r.status_code == 200 and r.json()["etag"] == api.get("/api/v1/policy").headers["etag"]
    assert names(api) == []


def test_bad_rules_name_the_field(api):
    cases = [
        ({"name": "x", "action": "explode"}, ["body", "action"]),
        ({"name": "x y", "action": "drop"}, ["body", "name"]),
        ({"name": "x", "action": "drop", "match": {"src": "10.0.0.300/8"}}, ["body", "match", "src"]),
        ({"name": "x", "action": "drop", "match": {"app": "nosuchapp"}}, ["body", "match", "app"]),
        ({"name": "x", "action": "drop", "match": {"colour": "red"}}, ["body", "match", "colour"]),
        ({"name": "x", "action": "rate_limit", "rate_limit": {"bps": "fast"}},
         ["body", "rate_limit", "bps"]),
    ]
    for body, loc in cases:
        r = api.post("/api/v1/rules", json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["loc"] == loc, (body, r.json())


def test_a_rule_naming_an_unknown_set_is_refused(api):
    r = api.post("/api/v1/rules", json={"name": "x", "action": "drop", "match": {"src_set": "bl"}})
    assert r.status_code == 422 and "unknown set 'bl'" in r.json()["detail"][0]["msg"]


def test_rate_limit_and_reject_rules_round_trip(api):
    rl = {"name": "cap", "match": {"app": "bittorrent"}, "action": "rate_limit",
          "rate_limit": {"bps": "10Mbit", "per": "flow"}}
    r = api.post("/api/v1/rules", json=rl)
    assert r.status_code == 201 and r.json()["rate_limit"] == {"bps": 10_000_000, "per": "flow"}
    assert api.post("/api/v1/rules", json={"name": "rst", "match": {"port": 23},
                                            "action": "reject"}).status_code == 201
