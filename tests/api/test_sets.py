"""Sets by name: JSON or plain-text bodies, a million lines, errors pointing at the line."""

from __future__ import annotations

import time

TEXT = {"Content-Type": "text/plain"}


def test_a_set_loads_from_json_and_reads_back_normalised(api):
    r = api.put("/api/v1/sets/carriers", json={"entries": ["203.0.113.7/24", "2001:db8::1"]})
    assert r.status_code == 200 and r.json() == {"name": "carriers", "count": 2}
    got = api.get("/api/v1/sets/carriers").json()
    assert got == {"name": "carriers", "count": 2,
                   "entries": ["203.0.113.0/24", "2001:db8::1/128"]}
    assert api.get("/api/v1/sets").json() == [{"name": "carriers", "count": 2, "source": "api"}]


def test_a_set_loads_from_text_with_comments_and_blank_lines(api):
    body = "# carriers\n10.0.0.0/8\n\n192.0.2.1  # one host\n2001:db8::/32\n"
    r = api.put("/api/v1/sets/c", content=body, headers=TEXT)
    assert r.status_code == 200 and r.json()["count"] == 3
    r = api.get("/api/v1/sets/c", headers={"Accept": "text/plain"})
    assert r.text == "10.0.0.0/8\n192.0.2.1/32\n2001:db8::/32\n"


def test_a_bad_line_is_named_and_nothing_changes(api):
    api.put("/api/v1/sets/c", json={"entries": ["10.0.0.0/8"]})
    r = api.put("/api/v1/sets/c", content="10.1.0.0/16\n10.2.0.0/33\n", headers=TEXT)
    assert r.status_code == 422
    d = r.json()["detail"][0]
    assert d["loc"] == ["body"] and d["line"] == 2 and "10.2.0.0/33" in d["msg"]
    r = api.put("/api/v1/sets/c", json={"entries": ["10.1.0.0/16", "nope"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "entries", 1]
    assert api.get("/api/v1/sets/c").json()["entries"] == ["10.0.0.0/8"]


def test_entries_are_added_and_removed_in_bulk(api):
    api.put("/api/v1/sets/s", json={"entries": ["10.0.0.0/8"]})
    r = api.post("/api/v1/sets/s/entries", content="10.1.0.0/16\n10.2.0.0/16\n", headers=TEXT)
    assert r.json()["count"] == 3
    r = api.request("DELETE", "/api/v1/sets/s/entries", json={"entries": ["10.1.0.0/16"]})
    assert r.status_code == 200 and r.json()["count"] == 2
    assert api.get("/api/v1/sets/s").json()["entries"] == ["10.0.0.0/8", "10.2.0.0/16"]


def test_unknown_sets_are_404(api):
    assert api.get("/api/v1/sets/nope").status_code == 404
    assert api.delete("/api/v1/sets/nope").status_code == 404
    assert api.post("/api/v1/sets/nope/entries", json={"entries": ["10.0.0.0/8"]}
                    ).status_code == 404


def test_a_set_a_rule_uses_cannot_be_deleted(api):
    api.put("/api/v1/sets/bl", json={"entries": ["198.51.100.0/24"]})
    api.post("/api/v1/rules", json={"name": "r", "match": {"src_set": "bl"}, "action": "drop"})
    r = api.delete("/api/v1/sets/bl")
    assert r.status_code == 409 and "used by a rule" in r.json()["detail"]
    api.delete("/api/v1/rules/r")
    assert api.delete("/api/v1/sets/bl").status_code == 200
    assert api.get("/api/v1/sets").json() == []


def test_bad_set_names_and_media_types_are_refused(api):
    assert api.put("/api/v1/sets/bad name", json={"entries": []}).status_code == 422
    r = api.put("/api/v1/sets/s", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    r = api.put("/api/v1/sets/s", content=b"\xff\xfe", headers=TEXT)
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"][0]["msg"]
    r = api.put("/api/v1/sets/s", json={"entries": "10.0.0.0/8"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "entries"]


def test_a_million_line_upload_goes_through_in_seconds(api):
    lines = "".join(f"{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}.0/24\n" for i in range(1_000_000))
    t = time.monotonic()
    r = api.put("/api/v1/sets/big", content=lines.encode(), headers=TEXT)
    took = time.monotonic() - t
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"name": "big", "count": 1_000_000}
    assert took < 20, f"{took:.1f}s"
    assert api.get("/api/v1/sets").json()[0]["count"] == 1_000_000
