"""CLI verbs that drive a running xdpgate over its REST API.

`register(app)` adds: rules list|add|rm, sets list|load, policy get|apply, flows, stats.
Each finds the API at --url (default $XDPGATE_URL or http://127.0.0.1:8080) with the token
from --token-file or STATE_DIR/tokens/admin (read-only as a fallback). A failed call
prints `error: <the server's message>` and exits 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from .errors import XgError
from .client import Client, ClientError, default_state_dir, default_url, read_token
from .policy import PolicyError, SetFile, from_yaml

F = TypeVar("F", bound=Callable[..., Any])
out = Console()
err = Console(stderr=True, soft_wrap=True)

Url = Annotated[str | None, typer.Option("--url", envvar="XDPGATE_URL",
                                         help="API base URL [default: http://127.0.0.1:8080]")]
StateDirOpt = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="XDPGATE_STATE_DIR",
    help="where the tokens are [default: /var/lib/xdpgate]")]
Pinned = Annotated[bool, typer.Option(
    help="read the running filter's pinned maps directly (root, no API)")]
Instance = Annotated[str, typer.Option(help="with --pinned: the filter's instance name")]
Netns = Annotated[str | None, typer.Option(help="with --pinned: the filter's network namespace")]
TokenFile = Annotated[Path | None, typer.Option("--token-file", help="file holding the token")]
CaCert = Annotated[Path | None, typer.Option("--cacert", help="CA bundle for an https URL")]
MATCH_INT_KEYS = ("proto", "tunnel_id", "src_port", "dst_port", "port")


def _client(url: str | None, state_dir: Path | None, token_file: Path | None,
            cacert: Path | None = None) -> Client:
    token = read_token(state_dir or default_state_dir(), token_file)
    return Client(url or default_url(), token, verify=str(cacert) if cacert else True)


def _fails_cleanly(fn: F) -> F:
    """Print server and input errors as `error: ...` with exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except ClientError as e:
            err.print(f"error: {e.message}", markup=False, highlight=False)
        except (PolicyError, XgError) as e:
            err.print(f"error: {e}", markup=False, highlight=False)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _scalar(key: str, v: str) -> Any:
    v = v.strip()
    return int(v) if key in MATCH_INT_KEYS and v.isdigit() else v


def parse_match(items: list[str]) -> dict[str, Any]:
    """['proto=udp', 'dst_port=5060-5061', 'src=10.0.0.0/8,10.1.0.0/16'] -> match dict."""
    m: dict[str, Any] = {}
    for it in items:
        key, sep, val = it.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClientError(f"--match {it!r}: write KEY=VALUE (e.g. dst_port=5060)")
        vals = [_scalar(key, x) for x in val.split(",")]
        m[key] = vals[0] if len(vals) == 1 else vals
    return m


def _compact(match: dict[str, Any]) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in match.items()) or "(any)"


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def register(app: typer.Typer) -> None:
    """Add the REST-backed verbs to the main `xdpgate` app."""
    rules = typer.Typer(help="List, add and remove rules of the running policy (over the API).",
                        no_args_is_help=True)
    sets = typer.Typer(help="List and load named address sets (over the API).",
                       no_args_is_help=True)
    policy = typer.Typer(help="Read or replace the running policy (over the API).",
                         no_args_is_help=True)
    app.add_typer(rules, name="rules")
    app.add_typer(sets, name="sets")
    app.add_typer(policy, name="policy")

    @rules.command("list", epilog="Example: xdpgate rules list --url http://127.0.0.1:8080")
    @_fails_cleanly
    def rules_list(url: Url = None, state_dir: StateDirOpt = None,
                   token_file: TokenFile = None, cacert: CaCert = None) -> None:
        """Show the rules in order (first match wins) with their hit counters."""
        with _client(url, state_dir, token_file, cacert) as c:
            rows = c.rules()
            hits = {r["name"]: r for r in c.stats().get("rules", [])}
        t = Table("#", "name", "action", "match", "packets", "bytes", title="rules")
        for r in rows:
            h = hits.get(r["name"], {})
            act = r["action"]
            if r.get("rate_limit"):
                rl = r["rate_limit"]
                act += f" {rl.get('bps') or rl.get('pps')}{' bps' if rl.get('bps') else ' pps'}"
                act += f"/{rl.get('per', 'rule')}"
            t.add_row(str(r["position"]), r["name"], act, _compact(r.get("match", {})),
                      _human(h.get("packets", 0)), _human(h.get("bytes", 0)))
        out.print(t)

    @rules.command("add", epilog="Examples:\n\n  xdpgate rules add no-sip --match proto=udp "
                   "--match dst_port=5060-5061 --action drop --position 0\n\n"
                   "  xdpgate rules add cap --match app=bittorrent --action rate_limit "
                   "--rate 10Mbit --per flow\n\n"
                   "  xdpgate rules add --json '{\"name\": \"x\", \"match\": {\"port\": 23}, "
                   "\"action\": \"reject\"}'")
    @_fails_cleanly
    def rules_add(
        name: Annotated[str | None, typer.Argument(help="rule name")] = None,
        match: Annotated[list[str] | None, typer.Option(
            "--match", "-m", help="KEY=VALUE (repeat; commas make a list)")] = None,
        action: Annotated[str | None, typer.Option(
            help="allow, drop, reject or rate_limit")] = None,
        rate: Annotated[str | None, typer.Option(help="for rate_limit: 10Mbit, or 500pps")] = None,
        per: Annotated[str, typer.Option(help="rate limit per flow or per rule")] = "rule",
        position: Annotated[int | None, typer.Option(help="0-based place in the list")] = None,
        before: Annotated[str | None, typer.Option(help="put it before this rule")] = None,
        after: Annotated[str | None, typer.Option(help="put it after this rule")] = None,
        comment: Annotated[str | None, typer.Option(help="free text")] = None,
        json_rule: Annotated[str | None, typer.Option("--json", help="the whole rule as JSON "
                                                      "(@FILE reads a file)")] = None,
        url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
        cacert: CaCert = None,
    ) -> None:
        """Add a rule to the running policy, last or at a given place."""
        if json_rule is not None:
            try:
                text = (Path(json_rule[1:]).read_text() if json_rule.startswith("@")
                        else json_rule)
            except OSError as e:
                raise ClientError(f"can't read {json_rule[1:]}: {e.strerror}") from None
            try:
                rule = json.loads(text)
            except ValueError as e:
                raise ClientError(f"--json: not valid JSON: {e}") from None
        else:
            if not name or not action:
                raise ClientError("give NAME and --action (or the whole rule with --json)")
            rule = {"name": name, "match": parse_match(match or []), "action": action}
            if rate is not None:
                r = rate.strip()
                rl: dict[str, Any] = ({"pps": int(r[:-3])} if r.lower().endswith("pps")
                                      and r[:-3].isdigit() else {"bps": r})
                rule["rate_limit"] = {**rl, "per": per}
            if comment:
                rule["comment"] = comment
        with _client(url, state_dir, token_file, cacert) as c:
            r = c.add_rule(rule, position=position, before=before, after=after)
        out.print(f"added rule {r['name']} at position {r['position']}")

    @rules.command("rm", epilog="Example: xdpgate rules rm no-sip")
    @_fails_cleanly
    def rules_rm(name: Annotated[str, typer.Argument(help="rule name")], url: Url = None,
                 state_dir: StateDirOpt = None, token_file: TokenFile = None,
                 cacert: CaCert = None) -> None:
        """Remove a rule from the running policy."""
        with _client(url, state_dir, token_file, cacert) as c:
            c.delete_rule(name)
        out.print(f"removed rule {name}")

    @sets.command("list", epilog="Example: xdpgate sets list")
    @_fails_cleanly
    def sets_list(url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
                  cacert: CaCert = None) -> None:
        """Show the named sets, their sizes and where they come from."""
        with _client(url, state_dir, token_file, cacert) as c:
            rows = c.sets()
        t = Table("name", "entries", "source", title="sets")
        for s in rows:
            t.add_row(s["name"], str(s["count"]), s["source"])
        out.print(t)

    @sets.command("load", epilog="Examples:\n\n  xdpgate sets load blocklist /etc/xdpgate/"
                  "blocklist.txt\n\n  curl -s https://example.net/drop.txt | xdpgate sets load "
                  "blocklist - --add")
    @_fails_cleanly
    def sets_load(
        name: Annotated[str, typer.Argument(help="set name")],
        file: Annotated[str, typer.Argument(help="one CIDR a line; - reads stdin")],
        add: Annotated[bool, typer.Option("--add", help="add to the set instead of "
                                          "replacing it")] = False,
        remove: Annotated[bool, typer.Option("--remove", help="remove these entries")] = False,
        url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
        cacert: CaCert = None,
    ) -> None:
        """Upload a set from a text file (replaces it; creates it if new)."""
        if add and remove:
            raise ClientError("give --add or --remove, not both")
        with _client(url, state_dir, token_file, cacert) as c:
            if file == "-":
                src: Any = sys.stdin.buffer
            else:
                try:
                    src = open(file, "rb")
                except OSError as e:
                    raise ClientError(f"can't read {file}: {e.strerror}") from None
            with src:
                n = (c.add_set_entries(name, src) if add else
                     c.remove_set_entries(name, src) if remove else c.put_set(name, src))
        out.print(f"set {name}: {n} entries")

    @policy.command("get", epilog="Example: xdpgate policy get > running.yaml")
    @_fails_cleanly
    def policy_get(
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML")] = False,
        url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
        cacert: CaCert = None,
    ) -> None:
        """Print the running policy (YAML, as a policy file) and its ETag on stderr."""
        with _client(url, state_dir, token_file, cacert) as c:
            p, etag = c.get_policy()
        sys.stdout.write(json.dumps(p, indent=2) + "\n" if as_json else
                         yaml.safe_dump(p, sort_keys=False))
        err.print(f"# etag {etag}", markup=False, highlight=False)

    @policy.command("apply", epilog="Example: xdpgate policy apply policy.yaml "
                    "--if-match '\"v12\"'")
    @_fails_cleanly
    def policy_apply(
        file: Annotated[Path, typer.Argument(help="policy file (YAML)")],
        if_match: Annotated[str | None, typer.Option(
            "--if-match", help="only if the running policy still has this ETag")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only")] = False,
        url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
        cacert: CaCert = None,
    ) -> None:
        """Replace the running policy with a file, atomically (checked here first, with lines)."""
        try:
            text = file.read_text()
        except OSError as e:
            raise ClientError(f"can't read {file}: {e.strerror}") from None
        p = from_yaml(text, str(file))
        for d in p.sets.values():  # set files relative to the policy file, as for `run`
            if isinstance(d, SetFile) and not Path(d.file).is_absolute():
                d.file = str((file.resolve().parent / d.file))
        body = p.model_dump(mode="json", exclude_none=True)
        with _client(url, state_dir, token_file, cacert) as c:
            if dry_run:
                for w in c.validate_policy(body):
                    err.print(f"warning: {w}", markup=False, highlight=False)
                out.print(f"{file}: valid")
                return
            etag = c.put_policy(body, if_match=if_match)
        out.print(f"applied {file}: etag {etag}")

    @app.command("flows", epilog="Examples:\n\n  xdpgate flows --top 20\n\n"
                 "  xdpgate flows --app whatsapp --sort packets\n\n"
                 "  xdpgate flows --ip 10.0.0.0/8 --port 5060 --verdict drop")
    @_fails_cleanly
    def flows_cmd(
        top: Annotated[int, typer.Option("--top", "-n", help="how many")] = 20,
        app_: Annotated[str | None, typer.Option("--app", help="application label")] = None,
        category: Annotated[str | None, typer.Option(help="category label")] = None,
        ip: Annotated[str | None, typer.Option(help="either endpoint, address or CIDR")] = None,
        port: Annotated[int | None, typer.Option(help="either port")] = None,
        verdict: Annotated[str | None, typer.Option(help="allow, drop, reject, ...")] = None,
        sort: Annotated[str, typer.Option(
            help="bytes, packets, age or idle (most first: the oldest, the longest idle)")] = "bytes",
        url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
        cacert: CaCert = None,
        pinned: Pinned = False, instance: Instance = "default", netns: Netns = None,
    ) -> None:
        """Show live flows, both directions, with class and verdict."""
        if pinned:
            from . import observe

            with observe.pinned_maps(instance, netns) as ms:
                rows = observe.flows(ms, app=app_, category=category, ip=ip, port=port,
                                     verdict=verdict, sort=sort, limit=top,
                                     rule_names=_local_rule_names(state_dir))
        else:
            with _client(url, state_dir, token_file, cacert) as c:
                rows = c.flows(app=app_, category=category, ip=ip, port=port, verdict=verdict,
                               sort=sort, limit=top)
        t = Table("l4", "client", "server", "pkts →/←", "bytes →/←", "age s", "idle s",
                  "tcp", "app", "category", "verdict", "rule", title=f"flows (top {top})")
        for f in rows:
            t.add_row(str(f["l4"]), f"{f['src']}:{f['sport']}", f"{f['dst']}:{f['dport']}",
                      f"{f['pkts_fwd']}/{f['pkts_rev']}",
                      f"{_human(f['bytes_fwd'])}/{_human(f['bytes_rev'])}",
                      f"{f['age_s']:.1f}", f"{f['idle_s']:.1f}", str(f.get("tcp_flags") or ""),
                      str(f.get("app") or ""), str(f.get("category") or ""),
                      str(f.get("verdict") or ""), str(f.get("rule") or ""))
        out.print(t)

    @app.command("stats", epilog="Example: xdpgate stats --url http://127.0.0.1:8080")
    @_fails_cleanly
    def stats_cmd(url: Url = None, state_dir: StateDirOpt = None, token_file: TokenFile = None,
                  cacert: CaCert = None, pinned: Pinned = False, instance: Instance = "default",
                  netns: Netns = None) -> None:
        """Show counters by verdict, reason, rule, app and category."""
        if pinned:
            from . import observe

            with observe.pinned_maps(instance, netns) as ms:
                s = observe.pinned_stats(ms, _local_rule_names(state_dir) or [])
        else:
            with _client(url, state_dir, token_file, cacert) as c:
                s = c.stats()

        def table(title: str, key: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
            t = Table(key, "packets", "bytes", title=title)
            for name, v in rows:
                t.add_row(name, str(v.get("packets", 0)), str(v.get("bytes", 0)))
            out.print(t)

        table("by verdict", "verdict", list(s.get("by_action", {}).items()))
        table("by reason", "reason", [(k, v) for k, v in s.get("by_reason", {}).items()
                                      if v.get("packets")])
        table("rules", "rule", [(r["name"], r) for r in s.get("rules", [])]
              + [("(default)", s.get("default", {}))])
        for key, label in (("apps", "app"), ("categories", "category")):
            if s.get(key):
                table(f"by {label}", label, [(r[label], r) for r in s[key]])
        ev = s.get("events", {})
        out.print("events: " + ", ".join(f"{k}={v}" for k, v in ev.items())
                  + f"; policy load errors: {s.get('policy_load_errors', 0)}")


def _local_rule_names(state_dir: Path | None) -> list[str] | None:
    """Rule names of the running policy, from the state dir (for --pinned views)."""
    from .policy import PolicyError, load_file

    f = Path(state_dir or "/var/lib/xdpgate") / "policy.yaml"
    try:
        return [r.name for r in load_file(f).rules]
    except PolicyError:
        return None
