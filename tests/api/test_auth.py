"""Who may do what: tokens on disk, 401 without a known token, 403 for read-only writes."""

from __future__ import annotations

import stat

import pytest

from xdpgate.api.auth import ensure_tokens

WRITES = [
    ("PUT", "/api/v1/policy", {"json": {"default": "allow"}}),
    ("POST", "/api/v1/rules", {"json": {"name": "r", "action": "drop"}}),
    ("PUT", "/api/v1/rules/r", {"json": {"name": "r", "action": "drop"}}),
    ("DELETE", "/api/v1/rules/r", {}),
    ("PUT", "/api/v1/sets/s", {"json": {"entries": ["10.0.0.0/8"]}}),
    ("DELETE", "/api/v1/sets/s", {}),
    ("POST", "/api/v1/sets/s/entries", {"json": {"entries": ["10.0.0.0/8"]}}),
    ("DELETE", "/api/v1/sets/s/entries", {"json": {"entries": ["10.0.0.0/8"]}}),
    ("POST", "/api/v1/interfaces", {"json": {"name": "veth0"}}),
    ("DELETE", "/api/v1/interfaces/veth0", {}),
]
READS = ["/api/v1/status", "/api/v1/interfaces", "/api/v1/policy", "/api/v1/rules",
         "/api/v1/sets", "/api/v1/flows", "/api/v1/stats", "/api/v1/classes", "/metrics"]


def test_first_start_writes_two_private_tokens_and_later_starts_reread_them(tmp_path):
    t1 = ensure_tokens(tmp_path)
    d = tmp_path / "tokens"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for role, tok in (("admin", t1.admin), ("readonly", t1.readonly)):
        f = d / role
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert f.read_text().strip() == tok and len(tok) >= 32
    assert t1.admin != t1.readonly
    assert ensure_tokens(tmp_path) == t1


def test_an_emptied_token_file_is_regenerated_and_the_other_kept(tmp_path):
    t1 = ensure_tokens(tmp_path)
    (tmp_path / "tokens" / "readonly").write_text("")
    t2 = ensure_tokens(tmp_path)
    assert t2.admin == t1.admin and t2.readonly and t2.readonly != t1.readonly


def test_every_write_route_is_in_the_403_table(app):
    """The table below covers every non-GET route, so a new write can't skip the check."""
    have = set()
    spec = app.openapi()["paths"]
    for path, ops in spec.items():
        for method in ops:
            if method.upper() != "GET" and path != "/api/v1/policy/validate":
                have.add((method.upper(), path))
    names = {"/rules/r": "/rules/{name}", "/sets/s": "/sets/{name}",
             "/interfaces/veth0": "/interfaces/{name}"}
    covered = set()
    for m, p, _ in WRITES:
        for concrete, template in names.items():
            p = p.replace(concrete, template)
        covered.add((m, p))
    assert have == covered


@pytest.mark.parametrize("method,path,kw", WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_the_readonly_token_cannot_change_anything(ro, ctl, method, path, kw):
    before = ctl.get_policy()
    r = ro.request(method, path, **kw)
    assert r.status_code == 403, r.text
    assert "read-only" in r.json()["detail"]
    assert ctl.get_policy() == before and ctl.audit_log == []


@pytest.mark.parametrize("path", READS)
def test_without_a_token_nothing_but_healthz_answers(anon, path):
    r = anon.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer nope", "Basic YWRtaW46YWRtaW4=", "Bearer ", "Bearer"])
def test_unknown_tokens_and_other_schemes_get_401(anon, header):
    assert anon.get("/api/v1/status", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("path", READS)
def test_the_readonly_token_reads_everything(ro, path):
    assert ro.get(path).status_code == 200


def test_healthz_needs_no_token(anon):
    assert anon.get("/healthz").json() == {"status": "ok"}


def test_changes_are_audited_with_the_token_name(api, ctl):
    assert api.post("/api/v1/rules", json={"name": "r", "action": "drop"}).status_code == 201
    assert ctl.audit_log[-1][:2] == ("admin", "rule.add r")


def test_openapi_declares_bearer_auth(anon):
    spec = anon.get("/openapi.json").json()
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    assert anon.get("/docs").status_code == 200
