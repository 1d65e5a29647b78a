"""Which modules a packet is shown to: per L4 and payload first byte, precomputed once.

A module whose :class:`~.base.Spec` declares a :class:`~.base.Prefilter` for an L4 is called
only for payloads starting with one of its first bytes; for any other payload the engine
answers its miss itself (no call). Modules that read no payload are the only ones shown
payload-less packets (TCP handshakes, bare ACKs).

An entry is a flat tuple for the engine's hot loop:
``(name, max_packets, match, learn, patience, waits_on)``, ``match`` None for a prefilter miss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .base import Spec

NO_LIMIT = 1 << 30  # the packet budget of a module that reads no payload: it is never skipped

Entry = tuple


def _run(spec: Spec, match: Callable, learn: Any) -> Entry:
    return (spec.name, spec.max_packets if spec.needs_payload else NO_LIMIT, match, learn, 0, ())


def _miss(spec: Spec, l4: str) -> Entry:
    pf = spec.prefilter[l4]
    return (spec.name, spec.max_packets, None, None, pf.patience, pf.waits_on)


def table(mods: Sequence[tuple[Spec, Callable, Any]], l4: str
          ) -> tuple[tuple[Entry, ...], tuple[tuple[Entry, ...], ...]]:
    """(entries for a packet without payload, entries by payload first byte) for ``l4``;
    ``mods`` are (spec, match, learn) in priority order, each reading ``l4``."""
    bare = tuple(_run(s, m, lr) for s, m, lr in mods if not s.needs_payload)
    by_byte = []
    for b in range(256):
        row = []
        for spec, match, learn in mods:
            pf = spec.prefilter.get(l4) if spec.needs_payload else None
            row.append(_run(spec, match, learn) if pf is None or b in pf.first else _miss(spec, l4))
        by_byte.append(tuple(row))
    return bare, tuple(by_byte)
