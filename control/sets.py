"""Address sets: parse CIDR lists fast (a million lines in seconds) into
(version, network int, prefix length) triples."""

from __future__ import annotations

import socket
from collections.abc import Container, Iterable
from pathlib import Path

from .policy import Policy, PolicyError, SetFile

Prefix = tuple[int, int, int]  # (4 or 6, network as int, prefix length)

_M4 = (1 << 32) - 1
_M6 = (1 << 128) - 1


def parse_prefix(text: str) -> Prefix:
    """'10.0.0.0/8' -> (4, 167772160, 8). Host bits are masked off. Raises ValueError."""
    addr, sep, plen_s = text.partition("/")
    try:
        if ":" in addr:
            v, bits, n = 6, 128, int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big")
        else:
            v, bits, n = 4, 32, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
        plen = int(plen_s) if sep else bits
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP address or CIDR prefix") from None
    if not 0 <= plen <= bits:
        raise ValueError(f"{text!r}: prefix length must be 0-{bits}")
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return v, n & mask, plen


def parse_lines(lines: Iterable[str], source: str) -> list[Prefix]:
    """One CIDR a line; blank lines and '#' comments are skipped."""
    out = []
    for i, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        try:
            out.append(parse_prefix(s))
        except ValueError as e:
            raise PolicyError([{"loc": [source], "msg": str(e), "line": i}]) from None
    return out


def enclosing(present: Container[Prefix], p: Prefix, below: int | None = None) -> Prefix | None:
    """The longest prefix in `present` strictly shorter than `p` (or than length `below`)
    that covers it; None if there is none."""
    ver, net, plen = p
    bits = 32 if ver == 4 else 128
    for ln in range((plen if below is None else below) - 1, -1, -1):
        q = (ver, net & ~((1 << (bits - ln)) - 1), ln)
        if q in present:
            return q
    return None


def prefix_str(p: Prefix) -> str:
    v, n, plen = p
    if v == 4:
        return socket.inet_ntop(socket.AF_INET, n.to_bytes(4, "big")) + f"/{plen}"
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big")) + f"/{plen}"


def resolve(policy: Policy, base: Path | None = None) -> dict[str, list[Prefix]]:
    """Every named set's prefixes; file paths are relative to `base`."""
    out: dict[str, list[Prefix]] = {}
    for name, d in policy.sets.items():
        if isinstance(d, SetFile):
            path = Path(d.file)
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                with open(path) as f:
                    out[name] = parse_lines(f, f"sets.{name} ({path})")
            except OSError as e:
                raise PolicyError([{"loc": ["sets", name, "file"],
                                    "msg": f"can't read {path}: {e.strerror}"}]) from None
        else:
            out[name] = parse_lines(d, f"sets.{name}")
    return out
