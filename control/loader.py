"""Compile the data path with bcc, pin its maps, and attach it to interfaces.

One filter instance is one compiled program (an entry stage that decides most packets
itself, and later stages it reaches by tail calls)
and one set of maps, shared by every interface it is attached to, so both
directions of a routed flow meet in one flow-table entry. Maps are pinned under
/sys/fs/bpf/xdpgate/ns<netns inode>-<instance>-<layout fingerprint>: the netns
inode tells apart interfaces of the same name in different namespaces, and the
fingerprint keeps a controller from adopting maps of another layout.
"""

from __future__ import annotations

import ctypes as ct
import errno
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import bpfsys
from .errors import XgError
from .layout import Sizes
from .maps import MapSet

log = logging.getLogger("xdpgate.loader")

BPFFS = Path("/sys/fs/bpf")
PIN_ROOT = BPFFS / "xdpgate"
PROG_NAME = "xdpgate_main"  # what `ip link` shows; how we recognise our own program
STAGES = {"xdpgate_level": 1, "xdpgate_decide": 2}  # progs slots, as in xdpgate_consts.h

XDP_FLAGS_UPDATE_IF_NOEXIST = 1
XDP_FLAGS_SKB_MODE = 2
XDP_FLAGS_DRV_MODE = 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "skb": XDP_FLAGS_SKB_MODE}
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def bpf_dir() -> Path:
    return Path(str(resources.files("xdpgate.bpf")))


def fingerprint(sizes: Sizes) -> str:
    h = hashlib.sha256()
    for name in sorted(p.name for p in bpf_dir().glob("*.h")):
        h.update((bpf_dir() / name).read_bytes())
    h.update(" ".join(sizes.cflags()).encode())
    return h.hexdigest()[:10]


def netns_inode(netns: str | None) -> int:
    path = f"/var/run/netns/{netns}" if netns else "/proc/self/ns/net"
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        raise XgError("find network namespace", netns or "(current)", "no such namespace",
                      "list them with `ip netns`") from None


def pin_dir_for(sizes: Sizes, instance: str, netns: str | None) -> Path:
    if not _INSTANCE_RE.match(instance):
        raise XgError("use instance name", repr(instance), "must be 1-32 of a-z 0-9 _ -")
    return PIN_ROOT / f"ns{netns_inode(netns)}-{instance}-{fingerprint(sizes)}"


def find_pin_dirs(instance: str | None = "default", netns: str | None = None) -> list[Path]:
    """Pin folders of filters of this instance (None: of any) in this namespace (any
    layout)."""
    if not PIN_ROOT.is_dir():
        return []
    prefix = f"ns{netns_inode(netns)}-"
    # the instance ends at the fingerprint: "a" must not find the folders of "a-b"
    want = re.compile(re.escape(prefix) + (re.escape(instance) if instance is not None
                                           else ".+") + r"-[0-9a-f]{10}")
    return sorted(p for p in PIN_ROOT.iterdir() if want.fullmatch(p.name))


def superseded_pin_dirs(instance: str, netns: str | None, current: Path) -> list[Path]:
    """Pin folders of this instance and namespace other than `current` (another layout or
    other sizes: a controller of this version can't adopt them) whose maps no XDP program
    attached in the namespace still uses. Their maps hold their memory for as long as they
    are pinned."""
    others = [d for d in find_pin_dirs(instance, netns) if d != current]
    if not others:
        return []
    used: set[int] = set()
    with _ipr(netns) as ipr:
        for link in ipr.get_links():
            xdp = link.get_attr("IFLA_XDP")
            prog_id = dict(xdp["attrs"]).get("IFLA_XDP_PROG_ID") if xdp else None
            if not prog_id:
                continue
            try:
                fd = bpfsys.prog_fd_by_id(prog_id)
            except OSError:
                continue  # gone meanwhile
            try:
                used.update(bpfsys.prog_map_ids(fd))
            finally:
                os.close(fd)
    out = []
    for d in others:
        ids = set()
        for pin in d.iterdir():
            try:
                fd = bpfsys.obj_get(str(pin))
            except OSError:
                continue
            try:
                ids.add(bpfsys.map_info(fd).id)
            finally:
                os.close(fd)
        if not ids & used:
            out.append(d)
    return out


def preflight(pin: bool = True) -> None:
    """The errors an operator can fix, each with what to do."""
    if os.geteuid() != 0:
        raise XgError("load the XDP filter", "(kernel)", "xdpgate needs root (CAP_BPF, CAP_NET_ADMIN)",
                      "run it with sudo")
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not (build / "include").exists() and not Path("/sys/kernel/kheaders.tar.xz").exists():
        raise XgError("compile the XDP program", str(build), "kernel headers are missing",
                      "install linux-headers-amd64 and run vagrant/provision.sh, which links them")
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise XgError("compile the XDP program", "bcc", "python3-bpfcc is not importable",
                      "apt-get install python3-bpfcc and use a venv made with "
                      "--system-site-packages (vagrant/provision.sh does both)") from None
    if pin and not os.path.ismount(BPFFS):
        raise XgError("pin maps", str(BPFFS), "bpffs is not mounted",
                      "mount -t bpf bpf /sys/fs/bpf")


@dataclass
class Filter:
    """A compiled and loaded filter instance."""

    sizes: Sizes
    pin_dir: Path | None
    maps: MapSet
    prog_fd: int
    adopted: bool  # the maps were already pinned: a running filter's state was taken over
    bpf: Any = field(repr=False, default=None)
    stage_fds: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def load(sizes: Sizes | None = None, *, instance: str = "default", netns: str | None = None,
         pin: bool = True) -> Filter:
    """Compile with bcc and load; with pin, reuse or create the pinned maps."""
    sizes = sizes or Sizes()
    preflight(pin)
    from bcc import BPF

    pin_dir = pin_dir_for(sizes, instance, netns) if pin else None
    adopted = bool(pin_dir and (pin_dir / "flows").exists())
    cflags = [f"-I{bpf_dir()}", "-Wno-unused-function", *sizes.cflags()]
    if pin_dir:
        pin_dir.mkdir(parents=True, exist_ok=True)
        cflags.append(f'-DXG_PIN_DIR="{pin_dir}"')
    src = str(bpf_dir() / "xdpgate.c").encode()
    try:
        b = BPF(src_file=src, cflags=cflags)
        fn = b.load_func(PROG_NAME.encode(), BPF.XDP)
        progs = b[b"progs"]
        stage_fds = {}
        for name, slot in STAGES.items():
            f = b.load_func(name.encode(), BPF.XDP)
            progs[ct.c_int(slot)] = ct.c_int(f.fd)
            stage_fds[name] = f.fd
    except Exception as e:  # bcc raises plain Exception with the compiler's words
        msg = str(e)
        hint = ""
        if "map" in msg.lower() or "memory" in msg.lower():
            hint = "a map may be too large for this machine: lower --flow-max"
        raise XgError("load the XDP program", "bpf/xdpgate.c", msg, hint) from None
    fds = {}
    for name in MapSet.types(sizes):
        try:
            fds[name] = b[name.encode()].map_fd
        except KeyError:
            pass
    maps = MapSet.from_fds(sizes, fds)
    if not adopted:  # a new flow table: its hash gets a seed of its own before any packet
        cfg = maps["config"].get(ct.c_uint32(0))
        cfg.flow_seed = secrets.randbits(64)
        maps["config"].set(ct.c_uint32(0), cfg)
    log.debug("loaded %s (pins %s, adopted=%s)", PROG_NAME, pin_dir, adopted)
    return Filter(sizes, pin_dir, maps, fn.fd, adopted, b, stage_fds)


def remove_pins(pin_dir: Path) -> None:
    if pin_dir.is_dir() and PIN_ROOT in pin_dir.parents:
        for p in pin_dir.iterdir():
            p.unlink()
        pin_dir.rmdir()


# ---- attaching -------------------------------------------------------------

def _ipr(netns: str | None):
    if netns:
        from pyroute2 import NetNS

        return NetNS(netns)
    from pyroute2 import IPRoute

    return IPRoute()


@dataclass
class Attached:
    ifname: str
    ifindex: int
    mode: str  # native | skb
    netns: str | None = None


def xdp_state(ifname: str, netns: str | None = None) -> tuple[int, int, str]:
    """(ifindex, attached program id or 0, mode) of an interface."""
    with _ipr(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise XgError("find interface", ifname, "no such interface",
                          "list interfaces with `ip link`" + (f" -n {netns}" if netns else ""))
        link = ipr.get_links(idx[0])[0]
        xdp = link.get_attr("IFLA_XDP")
        attrs = dict(xdp["attrs"]) if xdp else {}
        prog_id = attrs.get("IFLA_XDP_PROG_ID") or 0
        mode = {"xdp": "native", "xdpgeneric": "skb", "xdpoffload": "offload"}.get(
            attrs.get("IFLA_XDP_ATTACHED") or "", "")
        return idx[0], prog_id, mode


def prog_name(prog_id: int) -> str:
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        return bpfsys.prog_info(fd).name.decode(errors="replace")
    finally:
        os.close(fd)


def is_ours(prog_id: int) -> bool:
    try:
        return prog_name(prog_id) == PROG_NAME[:15]
    except OSError:
        return False


def _set_xdp(ifindex: int, fd: int, flags: int, netns: str | None) -> None:
    with _ipr(netns) as ipr:
        ipr.link("set", index=ifindex,
                 IFLA_XDP={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})


def attach(flt: Filter, ifname: str, mode: str = "native", *, force: bool = False,
           netns: str | None = None) -> Attached:
    """Attach (or atomically replace our own earlier program) on an interface."""
    if mode not in MODE_FLAGS:
        raise XgError("attach XDP program to", ifname, f"unknown mode {mode!r}", "use native or skb")
    ifindex, prog_id, cur_mode = xdp_state(ifname, netns)
    if prog_id and not is_ours(prog_id) and not force:
        raise XgError(f"attach XDP program to {ifname}", f"(program id {prog_id} is attached)",
                      f"another XDP program ({prog_name_safe(prog_id)}) is in place",
                      "detach it first (ip link set dev IF xdp off) or pass --force to replace it")
    if prog_id and cur_mode and cur_mode != mode:
        # the kernel will not hold one program in two modes: replace in its mode
        log.warning("%s: keeping the running filter's %s mode", ifname, cur_mode)
        mode = cur_mode
    try:
        _set_xdp(ifindex, flt.prog_fd, MODE_FLAGS[mode], netns)
    except Exception as e:
        code = getattr(e, "code", None)
        if mode == "native" and code in (errno.EOPNOTSUPP, errno.EINVAL, 524):
            log.warning("%s: native XDP not supported by the driver; falling back to generic (skb) "
                        "mode, which is slower", ifname)
            try:
                _set_xdp(ifindex, flt.prog_fd, XDP_FLAGS_SKB_MODE, netns)
            except Exception as e2:
                raise XgError(f"attach XDP program to {ifname}", "(skb mode)", str(e2),
                              "check the interface is up and supports XDP") from None
            return Attached(ifname, ifindex, "skb", netns)
        hint = "try --mode skb" if mode == "native" else "check the interface supports XDP"
        raise XgError(f"attach XDP program to {ifname}", f"({mode} mode)", str(e), hint) from None
    return Attached(ifname, ifindex, mode, netns)


def prog_name_safe(prog_id: int) -> str:
    try:
        return prog_name(prog_id) or f"id {prog_id}"
    except OSError:
        return f"id {prog_id}"


def detach(ifname: str, netns: str | None = None, *, only_ours: bool = True) -> bool:
    """Remove the XDP program from an interface; returns whether one was removed."""
    try:
        ifindex, prog_id, mode = xdp_state(ifname, netns)
    except XgError:
        return False
    if not prog_id:
        return False
    if only_ours and not is_ours(prog_id):
        raise XgError(f"detach XDP program from {ifname}", f"(program id {prog_id})",
                      "it is not xdpgate's", "remove it with ip link set dev IF xdp off")
    flags = {"native": XDP_FLAGS_DRV_MODE, "skb": XDP_FLAGS_SKB_MODE}.get(mode, 0)
    _set_xdp(ifindex, -1, flags, netns)
    return True
