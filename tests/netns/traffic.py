"""Real sockets in the lab's namespaces: send from the client, count what arrives."""

from __future__ import annotations

import socket
import threading
import time

from xdpgate.control.lab import Lab, netns_socket


class UdpSink:
    """A UDP receiver in a namespace, counting datagrams per payload prefix."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with netns_socket(ns):
            self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.sock.settimeout(0.2)
        self.got: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append(self.sock.recv(65535))
            except TimeoutError:
                pass
            except OSError:
                return

    def close(self) -> list[bytes]:
        time.sleep(0.3)
        self._stop.set()
        self._t.join(timeout=2)
        self.sock.close()
        return self.got


def udp_socket(ns: str, family: int = socket.AF_INET, sport: int = 0) -> socket.socket:
    with netns_socket(ns):
        s = socket.socket(family, socket.SOCK_DGRAM)
    if sport:
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
    return s


def tcp_connect(ns: str, addr: str, port: int, timeout: float = 2.0) -> socket.socket:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with netns_socket(ns):
        s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((addr, port))
    return s


class TcpServer:
    """Accepts connections in a namespace and echoes what it receives."""

    def __init__(self, ns: str, addr: str, port: int) -> None:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with netns_socket(ns):
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c: socket.socket) -> None:
        c.settimeout(2)
        try:
            while data := c.recv(65536):
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def lab_addrs(lab: Lab, v6: bool) -> tuple[str, str]:
    return (lab.client_ip6, lab.server_ip6) if v6 else (lab.client_ip4, lab.server_ip4)
