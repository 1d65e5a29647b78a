"""A lab of network namespaces joined by veth pairs, for the demo and the tests.

    client ns  c0 ---- g1 [ gateway ns: xdpgate on g1 and g2, forwarding ] g2 ---- s0  server ns
    10.77.1.2                10.77.1.1                10.77.2.1                   10.77.2.2
    fd00:77:1::2                                                                  fd00:77:2::2

The server also answers on 203.0.113.10 and 2001:db8:100::10 (a "licensed carrier"
range in the example policy). Neighbour entries are static so ARP cannot race, and
everything lives in the lab's own namespaces: the host's interfaces are untouched.

Each lab is recorded under /run/xdpgate/labs with the process that made it and its
namespaces (the benches' labs too: `record`). A lab whose maker died without removing it
(a test run or bench killed with SIGKILL) is removed, its namespaces and the pinned maps
of filters in them, when the next lab is made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def run(*argv: str, check: bool = True, ns: str | None = None,
        capture: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, check=check, text=True, capture_output=capture)


def _mac(n: int) -> str:
    return f"02:77:00:00:00:{n:02x}"


@dataclass
class Lab:
    prefix: str
    client_ns: str = ""
    gw_ns: str = ""
    server_ns: str = ""
    client_ip4: str = "10.77.1.2"
    server_ip4: str = "10.77.2.2"
    client_ip6: str = "fd00:77:1::2"
    server_ip6: str = "fd00:77:2::2"
    carrier_ip4: str = "203.0.113.10"
    carrier_ip6: str = "2001:db8:100::10"
    gw_ifaces: list[str] = field(default_factory=list)
    client_if: str = ""
    server_if: str = ""

    def __post_init__(self) -> None:
        p = self.prefix
        self.client_ns, self.gw_ns, self.server_ns = f"{p}-c", f"{p}-g", f"{p}-s"
        self.gw_ifaces = [f"{p}g1", f"{p}g2"]
        self.client_if, self.server_if = f"{p}c0", f"{p}s0"

    @classmethod
    def create(cls, prefix: str | None = None) -> Lab:
        prefix = prefix or "xg" + secrets.token_hex(3)
        if len(prefix) > 12 or not prefix.replace("-", "").isalnum():
            raise ValueError("lab prefix: up to 12 letters and digits")
        sweep()
        lab = cls(prefix)
        record(prefix, [lab.client_ns, lab.gw_ns, lab.server_ns])
        try:
            lab._build()
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _build(self) -> None:
        c, g, s = self.client_ns, self.gw_ns, self.server_ns
        g1, g2 = self.gw_ifaces
        for ns in (c, g, s):
            run("ip", "netns", "add", ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        run("ip", "link", "add", self.client_if, "netns", c, "address", _mac(1), "type", "veth",
            "peer", "name", g1, "netns", g, "address", _mac(2))
        run("ip", "link", "add", self.server_if, "netns", s, "address", _mac(4), "type", "veth",
            "peer", "name", g2, "netns", g, "address", _mac(3))
        for ns in (c, g, s):
            run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", ns=ns, check=False)
            run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", ns=ns, check=False)
            run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=ns, check=False)
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=g)
        run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=g)
        addrs = [
            (c, self.client_if, ["10.77.1.2/24", "fd00:77:1::2/64"]),
            (g, g1, ["10.77.1.1/24", "fd00:77:1::1/64"]),
            (g, g2, ["10.77.2.1/24", "fd00:77:2::1/64"]),
            (s, self.server_if, ["10.77.2.2/24", "fd00:77:2::2/64", "203.0.113.10/32",
                                 "2001:db8:100::10/128"]),
        ]
        for ns, dev, nets in addrs:
            for a in nets:
                run("ip", "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []), ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)
        run("ip", "route", "add", "default", "via", "10.77.1.1", ns=c)
        run("ip", "-6", "route", "add", "default", "via", "fd00:77:1::1", ns=c)
        run("ip", "route", "add", "default", "via", "10.77.2.1", ns=s)
        run("ip", "-6", "route", "add", "default", "via", "fd00:77:2::1", ns=s)
        run("ip", "route", "add", "203.0.113.10/32", "via", "10.77.2.2", ns=g)
        run("ip", "-6", "route", "add", "2001:db8:100::10/128", "via", "fd00:77:2::2", ns=g)
        neigh = [
            (c, self.client_if, "10.77.1.1", _mac(2)), (c, self.client_if, "fd00:77:1::1", _mac(2)),
            (g, g1, "10.77.1.2", _mac(1)), (g, g1, "fd00:77:1::2", _mac(1)),
            (g, g2, "10.77.2.2", _mac(4)), (g, g2, "fd00:77:2::2", _mac(4)),
            (s, self.server_if, "10.77.2.1", _mac(3)), (s, self.server_if, "fd00:77:2::1", _mac(3)),
        ]
        for ns, dev, ip, mac in neigh:
            run("ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent", ns=ns)
        # Frames a native-mode XDP program sends back (XDP_TX: reject's RST and ICMP) are
        # only received by a veth peer that runs XDP itself: give the hosts' ends a
        # pass-everything program, as a real NIC needs nothing of the kind.
        from . import bpfsys, loader

        fd = bpfsys.load_xdp_pass("lab_pass")
        try:
            for ns, dev in ((c, self.client_if), (s, self.server_if)):
                idx = loader.xdp_state(dev, ns)[0]
                loader._set_xdp(idx, fd, loader.XDP_FLAGS_DRV_MODE, ns)
        finally:
            os.close(fd)

    def destroy(self) -> None:
        """Remove the namespaces, the pins of filters loaded in them (a controller killed
        before it could remove its own) and the lab's record."""
        remove_namespaces([self.client_ns, self.gw_ns, self.server_ns])
        forget(self.prefix)

    def exec(self, ns: str, *argv: str, check: bool = True,
             timeout: float | None = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, text=True,
                              capture_output=True, timeout=timeout)

    def popen(self, ns: str, *argv: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True, **kw)  # type: ignore

    @staticmethod
    def exists(prefix: str) -> bool:
        return os.path.exists(f"/var/run/netns/{prefix}-g")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


LABS = Path("/run/xdpgate/labs")


def _identity(pid: int) -> str | None:
    """A process as "pid start-time" (the start time tells a reused pid apart); None when
    it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def record(name: str, namespaces: list[str]) -> None:
    """Note that this process is making namespaces `namespaces` (a lab called `name`)."""
    LABS.mkdir(parents=True, exist_ok=True)
    (LABS / name).write_text(f"{_identity(os.getpid())}\n{' '.join(namespaces)}\n")


def forget(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (LABS / name).unlink()


def remove_namespaces(namespaces: list[str]) -> None:
    """Delete these namespaces, and first the pins of filters loaded in them."""
    from . import loader
    from .errors import XgError

    for ns in namespaces:
        with contextlib.suppress(XgError, OSError):  # no such namespace: nothing pinned
            for d in loader.find_pin_dirs(None, ns):
                loader.remove_pins(d)
        run("ip", "netns", "del", ns, check=False)


def sweep() -> list[str]:
    """Remove the labs whose makers are gone; returns their names."""
    gone = []
    if not LABS.is_dir():
        return gone
    for rec in LABS.iterdir():
        try:
            owner, _, names = rec.read_text().partition("\n")
        except OSError:
            continue
        pid = owner.split()[0] if owner.split() else ""
        if pid.isdigit() and _identity(int(pid)) == owner:
            continue  # its maker is still running
        lab = Lab(rec.name)
        remove_namespaces(names.split() or [lab.client_ns, lab.gw_ns, lab.server_ns])
        forget(rec.name)
        gone.append(rec.name)
    return gone


@contextlib.contextmanager
def netns_socket(ns: str):
    """Run the enclosed code with this thread in network namespace `ns` (sockets opened
    inside stay there; so do BPF calls that look up devices by the caller's namespace)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNET = 0x40000000
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        back = libc.setns(orig, CLONE_NEWNET)
        os.close(orig)
        os.close(target)
        if back != 0:  # the thread must not stay in the lab's namespace
            raise OSError(ctypes.get_errno(), "setns back to the original namespace")
