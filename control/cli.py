"""xdpgate command line.

    xdpgate run --iface eth1 --policy /etc/xdpgate/policy.yaml   the filter and its REST API
    xdpgate demo                                                 the same on a lab it builds
    xdpgate classify capture.pcap                                label the flows of a capture
    xdpgate detach eth1                                          remove a kept filter and its pins
    xdpgate rules|sets|policy|flows|stats ...                    talk to the running service
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import XgError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="xdpgate: an application-aware XDP filter for VoIP and P2P traffic.")
log = logging.getLogger("xdpgate")

DEMO_PREFIX = "xgdemo"
DEMO_POLICY = """\
# xdpgate demo policy: calls only through the licensed carrier's range, no SIP
# signalling from elsewhere, BitTorrent throttled, one blocked address.
default: allow
sets:
  carriers: [203.0.113.0/24, 2001:db8:100::/48]
  blocklist: [10.77.1.66/32]
rules:
  - {name: carriers-pass, match: {ip_set: carriers}, action: allow}
  - {name: no-other-voip, match: {category: voip}, action: drop}
  - {name: no-sip-signalling, match: {proto: udp, dst_port: 5060-5061}, action: drop}
  - {name: p2p-throttle, match: {category: p2p}, action: rate_limit, rate_limit: {bps: 1Mbit, per: flow}}
  - {name: blocklist, match: {src_set: blocklist}, action: drop}
"""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        for noisy in ("pyroute2", "uvicorn.access", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


def serve_controller(ctrl, *, listen: str, tls_cert: str | None, tls_key: str | None,
                     on_ready=None) -> None:
    """Run a started controller with its API until SIGINT/SIGTERM; SIGHUP re-reads the policy."""
    from .policy import PolicyError

    server = None
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    try:
        try:
            from xdpgate.api.app import create_app
            from xdpgate.api.auth import ensure_tokens
            from xdpgate.api.server import serve

            tokens = ensure_tokens(ctrl.state_dir)
            # the default is loopback; another address is the operator's explicit choice
            server = serve(create_app(ctrl, tokens), listen, ssl_certfile=tls_cert,
                           ssl_keyfile=tls_key, allow_remote=True)
            api_line = f"; API on {server.url} (admin token in {ctrl.state_dir}/tokens/admin)"
        except ImportError as e:
            api_line = f"; API unavailable ({e})"
        typer.echo(ctrl.startup_line() + api_line, err=False)
        sys.stdout.flush()
        if on_ready:
            on_ready()
        while not stop.wait(0.2):
            if hup.is_set():
                hup.clear()
                try:
                    ctrl.reload_file()
                    typer.echo(f"reloaded {ctrl.cfg.policy_file}: policy v{ctrl.policy_version}")
                except (PolicyError, XgError) as e:
                    typer.echo(f"refused {ctrl.cfg.policy_file}, the running policy stays: {e}",
                               err=True)
    finally:
        if server is not None:
            server.stop()
        ctrl.stop()


@app.command()
def run(
    iface: Annotated[list[str], typer.Option("--iface", "-i", help="interface to filter (repeat)")],
    policy: Annotated[Optional[Path], typer.Option(help="policy file (YAML)")] = None,
    mode: Annotated[str, typer.Option(help="native (driver) or skb (generic) XDP")] = "native",
    listen: Annotated[str, typer.Option(help="API address")] = "127.0.0.1:8080",
    state_dir: Annotated[Path, typer.Option(help="policy, sets, tokens, audit log")] = Path(
        "/var/lib/xdpgate"),
    netns: Annotated[Optional[str], typer.Option(help="network namespace of the interfaces")] = None,
    instance: Annotated[str, typer.Option(help="instance name (pins)")] = "default",
    fail_mode: Annotated[str, typer.Option(help="open|closed: unlabelled flows while the "
                                           "controller is away")] = "open",
    keep: Annotated[bool, typer.Option(help="leave the filter running on SIGTERM (upgrades)")] = False,
    force: Annotated[bool, typer.Option(help="replace an XDP program xdpgate did not load")] = False,
    classify: Annotated[bool, typer.Option(help="sample and classify new flows")] = True,
    flow_max: Annotated[int, typer.Option(help="flow table entries (a multiple of 8)")] = 262144,
    tunnel_depth: Annotated[int, typer.Option(help="tunnel levels opened (0-2)")] = 1,
    tls_cert: Annotated[Optional[str], typer.Option(help="serve the API over TLS")] = None,
    tls_key: Annotated[Optional[str], typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Attach the filter and serve the REST API until SIGINT/SIGTERM.

    Example: xdpgate run --iface eth1 --policy /etc/xdpgate/policy.yaml
    """
    from .controller import Controller, RunConfig
    from .layout import Sizes
    from .policy import PolicyError

    _setup_logging(verbose)
    if fail_mode not in ("open", "closed"):
        _fail(ValueError("--fail-mode must be open or closed"))
    try:
        cfg = RunConfig(ifaces=iface, mode=mode, policy_file=policy, state_dir=state_dir,
                        instance=instance, netns=netns, sizes=Sizes(flow_max=flow_max,
                                                                     tunnel_depth=tunnel_depth),
                        fail_mode=fail_mode, keep=keep, force=force, classify=classify)
        ctrl = Controller(cfg)
        ctrl.start()
    except (XgError, PolicyError, ValueError, OSError) as e:
        _fail(e)
    serve_controller(ctrl, listen=listen, tls_cert=tls_cert, tls_key=tls_key)


@app.command()
def demo(
    down: Annotated[bool, typer.Option(help="remove the demo lab and exit")] = False,
    scenario: Annotated[str, typer.Option(help="basic or carrier")] = "basic",
    listen: Annotated[str, typer.Option(help="API address")] = "127.0.0.1:8080",
    state_dir: Annotated[Path, typer.Option()] = Path("/var/lib/xdpgate-demo"),
    mode: Annotated[str, typer.Option()] = "native",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Build a lab (client, gateway, server namespaces), filter it, print what to try.

    Example: xdpgate demo        (Ctrl-C removes the lab)
    Example: xdpgate demo --down
    """
    from .controller import Controller, RunConfig
    from .lab import Lab

    _setup_logging(verbose)
    lab = Lab(DEMO_PREFIX)
    if down:
        existed = Lab.exists(DEMO_PREFIX)
        _detach_quietly(lab)
        lab.destroy()
        typer.echo("demo lab removed" if existed else "no demo lab was running")
        return
    if Lab.exists(DEMO_PREFIX):
        _detach_quietly(lab)
        lab.destroy()
    lab = Lab.create(DEMO_PREFIX)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        pfile = state_dir / "demo-policy.yaml"
        if scenario == "carrier":
            from .scenario import CARRIER_POLICY

            pfile.write_text(CARRIER_POLICY)
        else:
            pfile.write_text(DEMO_POLICY)
        (state_dir / "policy.yaml").unlink(missing_ok=True)
        cfg = RunConfig(ifaces=lab.gw_ifaces, mode=mode, policy_file=pfile, state_dir=state_dir,
                        netns=lab.gw_ns, instance="demo")
        ctrl = Controller(cfg)
        ctrl.start()

        def ready() -> None:
            if scenario == "carrier":
                from .scenario import carrier_scenario

                carrier_scenario(lab, ctrl, echo=typer.echo)
            typer.echo(_demo_help(lab, listen, state_dir))

        serve_controller(ctrl, listen=listen, tls_cert=None, tls_key=None, on_ready=ready)
    except XgError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        lab.destroy()
        typer.echo("demo lab removed")


def _detach_quietly(lab) -> None:
    from . import loader

    for ifname in lab.gw_ifaces:
        try:
            loader.detach(ifname, lab.gw_ns)
        except Exception:
            pass


def _demo_help(lab, listen: str, state_dir: Path) -> str:
    c, s = lab.client_ns, lab.server_ns
    tok = state_dir / "tokens" / "admin"
    url = f"http://{listen}"
    return f"""
Demo lab: {c} (client {lab.client_ip4}) -> {lab.gw_ns} (xdpgate on {', '.join(lab.gw_ifaces)}) -> {s} (server {lab.server_ip4}, carrier {lab.carrier_ip4})
Try, in another shell:
  ip netns exec {c} ping -c2 {lab.server_ip4}                          # allowed (default allow)
  ip netns exec {s} python3 -m http.server 8000 &  ip netns exec {c} curl -s {lab.server_ip4}:8000 >/dev/null && echo web ok
  ip netns exec {c} bash -c 'echo -e "INVITE sip:bob@x SIP/2.0\\r\\n" > /dev/udp/{lab.server_ip4}/5060'   # dropped: no-sip-signalling
  ip netns exec {c} bash -c 'echo -e "INVITE sip:bob@x SIP/2.0\\r\\n" > /dev/udp/{lab.carrier_ip4}/5060'  # allowed: carriers-pass
  xdpgate stats --url {url} --token-file {tok}
  xdpgate flows --url {url} --token-file {tok}
  curl -H "Authorization: Bearer $(cat {tok})" {url}/api/v1/stats
  xdpgate demo --scenario carrier    # calls to the phone network, through a carrier and not
Ctrl-C (or `xdpgate demo --down`) removes the lab.
"""


@app.command("classify")
def classify_cmd(
    capture: Annotated[Path, typer.Argument(help="pcap or pcapng file")],
    format: Annotated[str, typer.Option("--format", help="table or jsonl")] = "table",
    max_packets: Annotated[int, typer.Option(help="packets per flow the classifier reads")] = 8,
) -> None:
    """Label every flow of a capture with app, category and confidence.

    Example: xdpgate classify call.pcap --format jsonl
    """
    from .classify.offline import main_classify

    if format not in ("table", "jsonl"):
        _fail(ValueError("--format must be table or jsonl"))
    raise typer.Exit(main_classify(str(capture), fmt=format, max_packets=max_packets))


@app.command()
def detach(
    iface: Annotated[str, typer.Argument(help="interface")],
    netns: Annotated[Optional[str], typer.Option()] = None,
    instance: Annotated[str, typer.Option()] = "default",
) -> None:
    """Remove a filter left running (--keep or a killed controller) and its pinned maps.

    Example: xdpgate detach eth1
    """
    from . import loader

    try:
        removed = loader.detach(iface, netns)
    except XgError as e:
        _fail(e)
    pins = loader.find_pin_dirs(instance, netns)
    for p in pins:
        loader.remove_pins(p)
    typer.echo(f"{iface}: {'detached' if removed else 'no XDP program was attached'}; "
               f"{len(pins)} pin folder(s) removed")


try:
    from .cli_remote import register as _register_remote

    _register_remote(app)
except ImportError:  # the REST client is optional for the data-path-only commands
    pass


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
