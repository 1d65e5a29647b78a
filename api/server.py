"""Serve the API with uvicorn in a background thread of the controller's process.

The socket is bound here, before the thread starts, so a busy port or a bad address is
an immediate XgError; uvicorn installs no signal handlers (the main thread owns them).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from xdpgate.control.errors import XgError

log = logging.getLogger("xdpgate.api")


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:8080', 'localhost:8080', ':8080' -> (host, port)."""
    s = listen.strip()
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
        if not sep:
            raise ValueError(f"{listen!r}: write an IPv6 address as [addr]:port")
    else:
        host, sep, port = s.rpartition(":")
        if not sep:
            raise ValueError(f"{listen!r} is not HOST:PORT")
        if ":" in host:
            raise ValueError(f"{listen!r}: write an IPv6 address as [addr]:port")
    host = host or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{listen!r}: the port must be 0-65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # older uvicorn; newer skips off the main thread
        pass


class Server:
    """A running API server: `.url`, `.stop()`."""

    def __init__(self, server: _ThreadServer, sock: socket.socket, url: str) -> None:
        self._server, self._sock, self.url = server, sock, url
        self._thread = threading.Thread(target=self._run, name="xdpgate-api", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:  # SystemExit from uvicorn included
            self.error = e
            log.error("the API server stopped: %s", e)

    def _start(self, timeout: float) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise XgError("start", f"the API server on {self.url}",
                              str(self.error or "it did not start in time"))
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: Any, listen: str = "127.0.0.1:8080", ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, *, allow_remote: bool = False,
          log_level: str = "warning") -> Server:
    """Start serving `app` on `listen` (HOST:PORT, [V6]:PORT; port 0 picks one).

    A non-loopback address is refused unless allow_remote (the CLI sets it when the
    operator gives --listen explicitly); without TLS that is logged as a warning.
    """
    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise XgError("listen on", repr(listen), str(e)) from None
    if not is_loopback(host) and not allow_remote:
        raise XgError("listen on", f"{host}:{port}", "not a loopback address",
                      "pass the address explicitly with --listen to serve beyond this host")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise XgError("set up TLS", "for the API", "give both a certificate and a key file")
    if not is_loopback(host) and ssl_certfile is None:
        log.warning("the API listens on %s without TLS: tokens cross the network in clear", host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(addr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
    except OSError as e:
        raise XgError("listen on", f"{host}:{port}", e.strerror or str(e),
                      "pick another --listen address or stop what uses it") from None
    sock.set_inheritable(True)
    bound_host, bound_port = sock.getsockname()[:2]
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(app, log_level=log_level, ssl_certfile=ssl_certfile,
                            ssl_keyfile=ssl_keyfile, lifespan="off", access_log=False,
                            server_header=False, timeout_graceful_shutdown=3)
    srv = Server(_ThreadServer(config), sock, f"{scheme}://{shown}:{bound_port}")
    srv._start(timeout=10)
    log.info("API listening on %s", srv.url)
    return srv
