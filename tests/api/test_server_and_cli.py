"""The API served in a background thread, the REST client, and the CLI verbs over it."""

from __future__ import annotations

import socket

import pytest
import typer
from typer.testing import CliRunner

from xdpgate.api.server import parse_listen, serve
from xdpgate.control import cli_remote
from xdpgate.control.client import Client, ClientError, read_token
from xdpgate.control.errors import XgError


@pytest.fixture
def server(app):
    srv = serve(app, "127.0.0.1:0")
    yield srv
    srv.stop()


@pytest.fixture
def cli(server, tmp_path):
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """xdpgate"""

    cli_remote.register(app)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, [*args[:2], *args[2:], "--url", server.url, "--state-dir",
                                   str(tmp_path / "state")] if args[0] in ("rules", "sets",
                                                                          "policy") else
                             [*args, "--url", server.url, "--state-dir",
                              str(tmp_path / "state")], input=input, env={"COLUMNS": "250"})
    return run


@pytest.mark.parametrize("text,want", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:80", ("::1", 80)),
    ("localhost:1", ("localhost", 1)), (":9", ("127.0.0.1", 9))])
def test_listen_addresses_parse(text, want):
    assert parse_listen(text) == want


def test_the_server_runs_in_a_thread_and_stops(app, tokens):
    srv = serve(app, "127.0.0.1:0")
    with Client(srv.url, tokens.readonly) as c:
        assert c.healthz() == {"status": "ok"}
        assert c.status()["version"] == "0.0.0-fake"
    srv.stop()
    with pytest.raises(ClientError, match="can't reach xdpgate"):
        Client(srv.url, tokens.readonly).healthz()


def test_the_server_serves_ipv6_loopback(app):
    srv = serve(app, "[::1]:0")
    try:
        assert srv.url.startswith("http://[::1]:")
        assert Client(srv.url).healthz() == {"status": "ok"}
    finally:
        srv.stop()


def test_a_non_loopback_address_needs_asking_and_a_busy_port_is_an_error(app):
    with pytest.raises(XgError, match="not a loopback address"):
        serve(app, "0.0.0.0:0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(XgError, match="Address already in use"):
            serve(app, f"127.0.0.1:{s.getsockname()[1]}")
    srv = serve(app, "0.0.0.0:0", allow_remote=True)
    srv.stop()


def test_the_client_reads_the_admin_token_and_falls_back_to_readonly(tmp_path, tokens):
    state = tmp_path / "state"
    assert read_token(state) == tokens.admin
    (state / "tokens" / "admin").unlink()
    assert read_token(state) == tokens.readonly
    with pytest.raises(ClientError, match="no API token.*`xdpgate run`.*makes the tokens"):
        read_token(tmp_path / "elsewhere")


def test_client_errors_carry_the_servers_message(server, tokens):
    with Client(server.url, tokens.admin) as c:
        with pytest.raises(ClientError) as e:
            c.add_rule({"name": "x", "action": "drop", "match": {"dst_port": 99999}})
        assert e.value.status == 422
        assert e.value.message.startswith("match.dst_port: 99999: ports are 0-65535")
    with Client(server.url, tokens.readonly) as c, pytest.raises(ClientError, match="read-only"):
        c.delete_rule("x")


def test_cli_rules_add_list_and_remove(cli, ctl):
    r = cli("rules", "add", "no-sip", "--match", "proto=udp", "--match", "dst_port=5060-5061",
            "--action", "drop")
    assert r.exit_code == 0, r.output
    r = cli("rules", "add", "cap", "-m", "app=bittorrent", "--action", "rate_limit", "--rate",
            "10Mbit", "--per", "flow", "--position", "0")
    assert r.exit_code == 0, r.output
    r = cli("rules", "add", "--json", '{"name": "rst", "match": {"port": [23, 2323]}, '
            '"action": "reject"}')
    assert r.exit_code == 0, r.output
    assert [x.name for x in ctl.policy.rules] == ["cap", "no-sip", "rst"]
    assert ctl.policy.rules[0].rate_limit.bps == 10_000_000
    r = cli("rules", "list")
    assert r.exit_code == 0 and "no-sip" in r.output and "rate_limit" in r.output
    assert cli("rules", "rm", "no-sip").exit_code == 0
    assert [x.name for x in ctl.policy.rules] == ["cap", "rst"]


def test_cli_prints_the_server_error_and_exits_1_without_a_traceback(cli):
    r = cli("rules", "rm", "nope")
    assert r.exit_code == 1
    assert "error: no rule named 'nope' (HTTP 404)" in r.output
    assert "Traceback" not in r.output
    r = cli("rules", "add", "x", "--match", "src_set=missing", "--action", "drop")
    assert r.exit_code == 1 and "unknown set 'missing'" in r.output


def test_cli_sets_load_and_list(cli, tmp_path, ctl):
    f = tmp_path / "bl.txt"
    f.write_text("".join(f"10.{i >> 8}.{i & 255}.0/24\n" for i in range(5000)))
    r = cli("sets", "load", "bl", str(f))
    assert r.exit_code == 0 and "5000 entries" in r.output, r.output
    r = cli("sets", "load", "bl", "-", "--add", input="192.0.2.0/24\n")
    assert r.exit_code == 0 and "5001 entries" in r.output
    r = cli("sets", "list")
    assert "bl" in r.output and "5001" in r.output and "api" in r.output
    f.write_text("10.0.0.0/8\nbogus\n")
    r = cli("sets", "load", "bl", str(f))
    assert r.exit_code == 1 and "bogus" in r.output and "line 2" in r.output


def test_cli_policy_get_and_apply(cli, tmp_path, ctl):
    p = tmp_path / "p.yaml"
    p.write_text("default: drop\nrules:\n  - name: dns\n    match: {dst_port: 53}\n"
                 "    action: allow\n")
    r = cli("policy", "apply", str(p))
    assert r.exit_code == 0, r.output
    assert ctl.policy.default == "drop"
    r = cli("policy", "get")
    assert r.exit_code == 0 and "name: dns" in r.stdout
    p.write_text("rules:\n  - name: x\n    action: nuke\n")
    r = cli("policy", "apply", str(p))
    assert r.exit_code == 1 and "line 3" in r.output and "rules[0].action" in r.output
    r = cli("policy", "apply", str(p), "--if-match", '"v0"')
    assert r.exit_code == 1
    p.write_text("default: allow\n")
    r = cli("policy", "apply", str(p), "--if-match", '"v0"')
    assert r.exit_code == 1 and "412" in r.output


def test_cli_flows_and_stats_tables(cli):
    r = cli("flows", "--top", "5", "--app", "sip")
    assert r.exit_code == 0 and "10.77.1.2:40000" in r.output and "whatsapp" not in r.output
    r = cli("flows", "--app", "nosuch")
    assert r.exit_code == 1 and "unknown app" in r.output
    r = cli("stats")
    assert r.exit_code == 0 and "by verdict" in r.output and "sample_lost=1" in r.output


@pytest.mark.parametrize("cmd", [("rules", "list"), ("rules", "add"), ("rules", "rm"),
                                 ("sets", "load"), ("sets", "list"), ("policy", "get"),
                                 ("policy", "apply"), ("flows",), ("stats",)])
def test_every_verb_has_a_purpose_line_and_an_example(cmd):
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """xdpgate"""

    cli_remote.register(app)
    r = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Example" in r.output
