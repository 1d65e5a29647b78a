"""Write a compiled policy into the data path atomically.

The policy maps hold two banks; the data path reads bank `config.gen & 1`. An
apply diffs the wanted entries against what the inactive bank holds, writes
only the differences, and then flips the bank with one write of `config.gen`:
packets see the old policy or the new one, never a mix. If any write fails the
flip does not happen, the old policy stays in force, and the bank is re-read
before its next use. After a policy that the inactive bank cannot be brought up to by
the prefixes both touched (a fresh compile, e.g. a big set loaded), `catch_up` copies it
into the inactive bank in the background, so the next edit writes what it changed
instead of every prefix.
"""

from __future__ import annotations

import array
import ctypes as ct
import struct
import errno
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import addr4, addrhint, layout, observe
from .compile import ROLES, Wanted
from .errors import XgError
from .maps import MapSet
from .sets import enclosing

log = logging.getLogger("xdpgate.apply")
GRACE_S = 0.005  # in-flight packets finish reading a bank well within this
# catch_up leaves alone a standby bank whose whole-table compare and write would cover
# fewer prefixes than this: a few milliseconds, not worth writing a bank for
CATCH_UP_MIN = 10_000
_PFX4 = struct.Struct("<BBBx4s")  # struct xg_pfx4_key
_LPM6 = struct.Struct("<IB16s3x")  # struct xg_lpm6_key


def _words(mask: int, n: int) -> list[int]:
    return [(mask >> (64 * i)) & 0xFFFFFFFFFFFFFFFF for i in range(n)]


def _mask(words: Any) -> int:
    return sum(int(w) << (64 * i) for i, w in enumerate(words))


@dataclass
class BankState:
    """What one bank holds, in the compiler's terms."""

    header: dict[str, int]
    rules: list[tuple[int, int, int, int, int]]
    rule_names: list[str]
    fieldbits: dict[int, int]
    portbits: dict[int, tuple[int, int, int]]
    addrclass: dict[int, tuple[int, ...]]
    tunid: dict[int, int]
    lpm: dict[tuple[int, int, int], int]
    bases4: dict[int, int] = field(default_factory=dict)  # /24 -> base class (control/addr4.py)
    hint: bytes = bytes(addrhint.SIZE)  # the bank's IPv6 address hint
    hint_stale: int = 0  # bits of prefixes gone since the hint was built (addrhint.STALE_MAX)
    # read back from the maps: its IPv4 table and IPv6 hint are not known (after a failed
    # apply they may be out of step with its prefixes), so the next apply rewrites them
    read_back: bool = False
    # how its prefixes came about (Wanted.lpm_base / lpm_touched): the bank applied after
    # it can then be brought up to date by the prefixes both touched
    lpm_base: dict | None = None
    lpm_touched: set | None = None

    @classmethod
    def empty(cls) -> BankState:
        return cls({}, [], [], {}, {}, {}, {}, {}, {})

    @classmethod
    def holding(cls, w: Wanted, bases4: dict[int, int], hint: bytes, stale: int,
                **history: Any) -> BankState:
        """A bank just written with `w`, its IPv4 base classes and IPv6 hint."""
        return cls(w.header, w.rules, w.rule_names, w.fieldbits, w.portbits, w.addrclass,
                   w.tunid, w.lpm, bases4, hint, stale, **history)


@dataclass
class Applier:
    maps: MapSet
    banks: list[BankState | None] = field(default_factory=lambda: [None, None])
    last_flip: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # the config entry's read-modify-write (a flip, the heartbeat), and the hit counters'
    # moves into the totals (readers of the hits need not wait for a long apply): each
    # held for a map write or a few hundred
    config_lock: threading.Lock = field(default_factory=threading.Lock)
    hits_lock: threading.Lock = field(default_factory=threading.Lock)
    classes: dict[frozenset[str], int] = field(default_factory=dict)
    # per-rule hits of banks no longer active, by rule name
    retired_hits: dict[str, tuple[int, int]] = field(default_factory=dict)
    retired_default: tuple[int, int] = (0, 0)  # ... and of their defaults
    # rule names of a bank whose contents are not known (adopted maps): the controller
    # knows which policy was running
    adopted_names: dict[int, list[str]] = field(default_factory=dict)
    # the Wanted applied last: the next compile starts from it (compile_policy's prev)
    last: Wanted | None = None
    # rule names of the running policy generation and of the one before, by generation:
    # a flow's cached rule slot is of the generation it was decided under
    gen_names: dict[int, list[str]] = field(default_factory=dict)

    def assume_empty(self) -> None:
        """The maps were just created: both banks are known to be empty (no read-back)."""
        self.banks = [BankState.empty(), BankState.empty()]

    @property
    def sizes(self) -> layout.Sizes:
        return self.maps.sizes

    # ---- config ----------------------------------------------------------
    def config(self) -> layout.Config:
        c = self.maps["config"].get(ct.c_uint32(0))
        return c if c is not None else layout.Config()

    def write_config(self, **fields: int) -> None:
        """Set these fields of the config entry, keeping the others (a heartbeat never
        undoes a flip written between its read and its write)."""
        with self.config_lock:
            c = self.config()
            for k, v in fields.items():
                setattr(c, k, v)
            self.maps["config"].set(ct.c_uint32(0), c)

    @property
    def gen(self) -> int:
        return self.config().gen

    def active_bank(self) -> int:
        return self.gen & 1

    # ---- reading a bank back (after adoption or a failed apply) -----------
    def read_bank(self, bank: int) -> BankState:
        s = self.sizes
        pol = self.maps["policy"].get(ct.c_uint32(bank)) or layout.Policy()
        header = {k: getattr(pol, k) for k in ("default_action", "frag_action", "unparsed_action",
                                                "tunnels", "flow_first", "stateless",
                                                "class_rule_min", "nrules", "fields")}
        rules = []
        for i in range(pol.nrules):
            r = self.maps["rules"].get(ct.c_uint32(bank * s.rule_max + i))
            rules.append((r.action, r.rl_unit, r.rl_per, r.rl_rate, r.rl_burst) if r else (0,) * 5)
        fb = {}
        lo, hi = bank * layout.FB_SIZE, (bank + 1) * layout.FB_SIZE
        for k, v in self.maps["fieldbits"].items():
            if lo <= k.value < hi and _mask(v.w):
                fb[k.value - lo] = _mask(v.w)
        pb = {}
        lo, hi = bank * layout.PORT_SLOTS, (bank + 1) * layout.PORT_SLOTS
        for k, v in self.maps["portbits"].items():
            if lo <= k.value < hi:
                t = (_mask(v.src.w), _mask(v.dst.w), _mask(v.any.w))
                if any(t):
                    pb[k.value - lo] = t
        ac = {}
        lo, hi = bank * s.addrclass_max, (bank + 1) * s.addrclass_max
        for k, v in self.maps["addrclass"].items():
            if lo <= k.value < hi:
                t = tuple(_mask(getattr(v, r).w) for r in ROLES)
                if any(t):
                    ac[k.value - lo] = t
        tid = {k.tun_id: _mask(v.w) for k, v in self.maps["tunid"].items() if k.bank == bank}
        lpm: dict[tuple[int, int, int], int] = {}
        bases4: dict[int, int] = {}
        for k, v in self.maps["pfx4"].items():
            if k.bank != bank:
                continue
            net = layout.addr4_of(k)
            if k.kind == layout.PFX_PREFIX:
                lpm[(4, net, k.len)] = v.value
            else:
                bases4[net >> 8] = v.value
        for k, v in self.maps["lpm6"].items():  # batched where the kernel can
            if k.bank == bank:
                lpm[(6, int.from_bytes(bytes(k.addr), "big"), k.prefixlen - 8)] = v.value
        names = [""] * len(rules)  # rule names are not in the maps; the controller knows them
        return BankState(header, rules, names, fb, pb, ac, tid, lpm, bases4, read_back=True)

    # ---- apply -------------------------------------------------------------
    def apply(self, wanted: Wanted) -> int:
        """Make `wanted` the running policy; returns the new generation."""
        with self.lock:
            gen = self.gen
            target = (gen + 1) & 1
            self._wait_grace()
            cur = self.banks[target]
            if cur is None:
                cur = self.read_bank(target)
            try:
                self._retire_hits(target)
                bases4, hint, stale = self._write_bank(target, cur, wanted)
                self._carry_buckets(target, wanted)
            except OSError as e:
                self.banks[target] = None
                raise _map_error(e) from None
            # the bank's state (its rule names) before the flip: a reader of the hits never
            # pairs the new policy's counters with the old names
            state = BankState.holding(wanted, bases4, hint, stale, lpm_base=wanted.lpm_base,
                                      lpm_touched=wanted.lpm_touched)
            with self.hits_lock:
                self.banks[target] = state
            self.write_config(gen=gen + 1)
            self.last_flip = time.monotonic()
            self.gen_names = {**{g: n for g, n in self.gen_names.items() if g == gen},
                              gen + 1: list(wanted.rule_names)}
            other = self.banks[target ^ 1]
            if other is not None:  # what it came from is needed no more: let it go
                other.lpm_base = other.lpm_touched = None
            self.classes = dict(wanted.classes)
            self.last = wanted
            log.debug("policy generation %d in bank %d", gen + 1, target)
            return gen + 1

    def needs_catch_up(self) -> bool:
        """Whether the next apply would look at many prefixes to bring the inactive bank up
        to the running policy before its own change: every prefix of both when the bank
        holds neither the running policy's prefixes nor those it was compiled from (a
        fresh compile), else the prefixes the running policy touched."""
        w = self.last
        if w is None:
            return False
        active = self.banks[self.active_bank()]
        standby = self.banks[self.active_bank() ^ 1]
        if active is None or active.lpm is not w.lpm:
            return False
        if standby is None:  # not known (a restart adopted the maps): to be read back
            return len(w.lpm) >= CATCH_UP_MIN
        if standby.lpm is w.lpm:
            return False
        if w.lpm_touched is not None and w.lpm_base is standby.lpm:
            return len(w.lpm_touched) >= CATCH_UP_MIN
        return len(w.lpm) + len(standby.lpm) >= CATCH_UP_MIN

    def catch_up(self) -> bool:
        """Write the running policy into the inactive bank too, when the next apply would
        otherwise rewrite it whole; nothing flips, and packets never read that bank. Returns
        whether it wrote. A failed write leaves the bank to be re-read, as after a failed
        apply."""
        with self.lock:
            if not self.needs_catch_up():
                return False
            w = self.last
            bank = self.active_bank() ^ 1
            self._wait_grace()
            try:
                cur = self.banks[bank] or self.read_bank(bank)
                self._retire_hits(bank)
                bases4, hint, stale = self._write_bank(bank, cur, w)
            except OSError as e:
                self.banks[bank] = None
                log.warning("couldn't bring the standby bank up to date: %s", _map_error(e))
                return False
            self.banks[bank] = BankState.holding(w, bases4, hint, stale)
            log.debug("standby bank %d holds generation %d's policy", bank, self.gen)
            return True

    def _wait_grace(self) -> None:
        """Until packets that read the bank flipped away from last have done with it."""
        wait = self.last_flip + GRACE_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _bank_names(self, bank: int) -> list[str]:
        """The rule names a bank's hit counters are by (slot order)."""
        st = self.banks[bank]
        return st.rule_names if st is not None else self.adopted_names.get(bank, [])

    def _carry_buckets(self, bank: int, new: Wanted) -> None:
        """The per-rule token buckets of `bank` for `new`: a rule of the running policy
        with the same name and the same limit keeps its bucket as it is now (a policy
        change is no fresh burst); every other rule's starts full."""
        rm = self.sizes.rule_max
        bk = self.maps["buckets"]
        active = self.banks[bank ^ 1]
        running = {}
        if active is not None:
            for j, (name, r) in enumerate(zip(active.rule_names, active.rules)):
                if name and r[1]:  # a rate limit (rl_unit) of its own
                    running[name] = (j, r)
        keys, vals = [], []
        for i in range(rm):
            b = None
            if i < len(new.rules) and new.rules[i][1]:
                j, r = running.get(new.rule_names[i], (-1, None))
                if r == new.rules[i]:
                    b = bk.get(ct.c_uint32((bank ^ 1) * rm + j))
            keys.append(ct.c_uint32(bank * rm + i))
            vals.append(b if b is not None else layout.Bucket())
        bk.set_many(keys, vals)

    def _retire_hits(self, bank: int) -> None:
        """Fold the per-rule and default hits of a bank about to be rewritten into the
        totals, zero them."""
        m = self.maps["rule_hits"]
        rm = self.sizes.rule_max
        base = bank * (rm + 1)
        zero = (layout.Counter * m.ncpu)()
        with self.hits_lock:
            names = self._bank_names(bank)
            self.adopted_names.pop(bank, None)
            for slot in range(rm + 1):
                v = m.get(ct.c_uint32(base + slot))
                if v is None:
                    continue
                pk, by = m.sum(v)
                if pk or by:
                    if slot == rm:
                        a, b = self.retired_default
                        self.retired_default = (a + pk, b + by)
                    elif slot < len(names) and names[slot]:
                        name = names[slot]
                        a, b = self.retired_hits.get(name, (0, 0))
                        self.retired_hits[name] = (a + pk, b + by)
                    m.set(ct.c_uint32(base + slot), zero)

    def _write_bank(self, bank: int, cur: BankState, new: Wanted,
                    ) -> tuple[dict[int, int], bytes, int]:
        """Write `new` into `bank` (which holds `cur`); returns the bank's IPv4 base
        classes, IPv6 address hint and its stale bits."""
        s = self.sizes
        w = s.rule_words
        Bits = layout.bits_type(w)

        def bits(mask: int) -> Any:
            return Bits((ct.c_uint64 * w)(*_words(mask, w)))

        # rules (whole small array)
        rk, rv = [], []
        for i in range(max(len(new.rules), len(cur.rules))):
            a = new.rules[i] if i < len(new.rules) else (0, 0, 0, 0, 0)
            if i >= len(cur.rules) or cur.rules[i] != a:
                rk.append(ct.c_uint32(bank * s.rule_max + i))
                rv.append(layout.Rule(action=a[0], rl_unit=a[1], rl_per=a[2], rl_rate=a[3],
                                      rl_burst=a[4]))
        if rk:
            self.maps["rules"].set_many(rk, rv)

        # field bitmaps, port bitmaps, address classes: arrays of bitmaps (one, three or
        # five per entry), packed as bytes (a port range is an entry per port); zero what
        # went away
        nbytes = 8 * w
        for name, old, want, base, per in (
            ("fieldbits", cur.fieldbits, new.fieldbits, bank * layout.FB_SIZE, 1),
            ("portbits", cur.portbits, new.portbits, bank * layout.PORT_SLOTS, 3),
            ("addrclass", cur.addrclass, new.addrclass, bank * s.addrclass_max, 5),
        ):
            put = [(idx, val) for idx, val in want.items() if old.get(idx) != val]
            put += [(idx, 0 if per == 1 else (0,) * per) for idx in old.keys() - want.keys()]
            if not put:
                continue
            keys = array.array("I", (base + idx for idx, _ in put)).tobytes()
            if per == 1:
                vals = b"".join(v.to_bytes(nbytes, "little") for _, v in put)
            else:
                vals = b"".join(x.to_bytes(nbytes, "little") for _, v in put for x in v)
            self.maps[name].set_many_raw(keys, vals, len(put))

        # tunnel ids (hash)
        tm = self.maps["tunid"]
        for t in cur.tunid.keys() - new.tunid.keys():
            tm.delete(layout.TunidKey(bank, t))
        for t, mask in new.tunid.items():
            if cur.tunid.get(t) != mask:
                tm.set(layout.TunidKey(bank, t), bits(mask))

        # prefixes, then what the data path reads in front of them: the IPv4 table (and
        # its base classes) and the IPv6 hint
        active = self.banks[bank ^ 1]
        if active is not None and active.read_back:
            active = None
        changed, gone = _lpm_delta(cur, new, active)
        self._write_prefixes(bank, changed, gone)
        # the active bank holds these very prefixes (a catch-up, a rule-only edit): its
        # IPv4 table and IPv6 hint are this bank's too
        same = active if active is not None and active.lpm is new.lpm else None
        bases4 = self._write_addr4(bank, cur, new, changed, gone, active, same)
        hint = self._write_hint(bank, cur, new.lpm, changed, gone, same)

        # header last: it also carries the rule count
        h = layout.Policy(**new.header)
        self.maps["policy"].set(ct.c_uint32(bank), h)
        return (bases4, *hint)

    def _write_addr4(self, bank: int, cur: BankState, new: Wanted, changed: Any, gone: Any,
                     active: BankState | None, same: BankState | None) -> dict[int, int]:
        """The bank's IPv4 table for `new.lpm`: only the words that differ from what the bank
        holds (read back through the map's mapping), then the base classes that changed.
        A bank read back from the maps is always rebuilt (BankState.read_back). When the
        active bank (`same`) holds `new.lpm`, its table is copied; when `new` was compiled
        from what the active bank holds, its table is the active one's with the ranges of
        the touched prefixes repainted; else it is built whole."""
        v4_changed = any(k[0] == 4 for k, _ in changed) or any(k[0] == 4 for k in gone)
        if not cur.read_back and not v4_changed:
            return cur.bases4
        m = self.maps["addr4"]
        lpm = new.lpm
        if same is not None:  # the active bank's table, copied
            table = m.words((bank ^ 1) * layout.A4_WORDS, layout.A4_WORDS)
            bases = dict(same.bases4)
        elif (active is not None and new.plan is not None and new.lpm_touched is not None
                and active.lpm is new.lpm_base):
            table = m.words((bank ^ 1) * layout.A4_WORDS, layout.A4_WORDS).copy().view(np.uint16)
            bases = dict(active.bases4)
            end = -1
            for _, net, plen in sorted(k for k in new.lpm_touched if k[0] == 4):
                r = min(plen, 24)
                top = net & (0xFFFFFFFF << (32 - r)) & 0xFFFFFFFF
                lo = top >> 8
                if lo < end:
                    continue  # inside a range repainted already
                end = lo + (1 << (24 - r))
                outer = enclosing(lpm, (4, top, r))
                fill = lpm[outer] if outer is not None else 0
                addr4.paint(table, bases, lo, end, fill,
                            ((q, lpm[q]) for q in new.plan.within(4, top, r)))
        else:
            table, bases = addr4.build(lpm.items())
        base = bank * layout.A4_WORDS
        new_w = table.view(np.uint64)
        idx = np.flatnonzero(m.words(base, layout.A4_WORDS) != new_w)
        m.put_words(idx + base, new_w[idx])
        pk = self.maps["pfx4"]

        def base_key(slot: int) -> bytes:
            return _PFX4.pack(bank, 24, layout.PFX_BASE, (slot << 8).to_bytes(4, "big"))

        put = [(s, c) for s, c in bases.items() if cur.bases4.get(s) != c]
        if put:
            pk.set_many_raw(b"".join(base_key(s) for s, _ in put),
                            array.array("I", (c for _, c in put)).tobytes(), len(put))
        drop = [s for s in cur.bases4 if s not in bases]
        if drop:
            pk.delete_many_raw(b"".join(base_key(s) for s in drop), len(drop))
        return bases

    def _write_hint(self, bank: int, cur: BankState, lpm: dict, changed: Any, gone: Any,
                    same: BankState | None) -> tuple[bytes, int]:
        """The bank's address hint for `lpm` and its stale bits: those of `same` when
        given (a bank holding `lpm` already), else `cur`'s with the bits of added IPv6
        prefixes set and those of gone ones left (a hint may let through too much), rebuilt
        once the stale bits would pass addrhint.STALE_MAX; only the words that differ are
        written."""
        gone = [k for k in gone if k[0] == 6]
        added = [k for k, _ in changed if k[0] == 6]
        stale = cur.hint_stale + addrhint.weight(gone)
        if same is not None:
            hint, stale = bytearray(same.hint), same.hint_stale
        elif not cur.read_back and not gone and not added:
            return cur.hint, cur.hint_stale
        elif not cur.read_back and stale <= addrhint.STALE_MAX:
            hint = bytearray(cur.hint)
            addrhint.add(hint, added)
        else:
            hint, stale = addrhint.build(lpm), 0
        idx, val = addrhint.changed_words(None if cur.read_back else cur.hint, hint)
        if idx:
            base = bank * layout.HINT_WORDS
            keys = array.array("I", (base + i for i in idx))
            self.maps["addrhint"].set_many_raw(keys.tobytes(), val.tobytes(), len(keys))
        return bytes(hint), stale

    def _write_prefixes(self, bank: int, changed: Any, gone: Any) -> None:
        """Write changed prefixes and delete gone ones, as packed bytes: a million entries in
        about a second. IPv4 ones are PFX_PREFIX entries of `pfx4`, IPv6 ones go to the trie."""
        for name, ver in (("pfx4", 4), ("lpm6", 6)):
            if ver == 4:
                def pack(net: int, plen: int) -> bytes:
                    return _PFX4.pack(bank, plen, layout.PFX_PREFIX, net.to_bytes(4, "big"))
            else:
                def pack(net: int, plen: int) -> bytes:
                    return _LPM6.pack(8 + plen, bank, net.to_bytes(16, "big"))
            keys, vals = [], array.array("I")
            for (v, net, plen), cid in changed:
                if v == ver:
                    keys.append(pack(net, plen))
                    vals.append(cid)
            if keys:
                self.maps[name].set_many_raw(b"".join(keys), vals.tobytes(), len(keys))
            dels = [pack(net, plen) for (v, net, plen) in gone if v == ver]
            if dels:
                self.maps[name].delete_many_raw(b"".join(dels), len(dels))

    # ---- per-rule hits ------------------------------------------------------
    def rule_hits(self) -> dict[str, tuple[int, int]]:
        """Packets and bytes per rule name since this Applier began: retired banks plus
        both banks (the inactive one holds the previous policy's hits until it is
        rewritten), so a rule's count never goes down when the policy changes."""
        with self.hits_lock:
            out = dict(self.retired_hits)
            m = self.maps["rule_hits"]
            for bank in (0, 1):
                base = bank * (self.sizes.rule_max + 1)
                for slot, name in enumerate(self._bank_names(bank)):
                    v = m.get(ct.c_uint32(base + slot)) if name else None
                    if v is None:
                        continue
                    pk, by = m.sum(v)
                    a, b = out.get(name, (0, 0))
                    out[name] = (a + pk, b + by)
            return out

    def default_hits(self) -> tuple[int, int]:
        """Packets and bytes the default decided, counted as rule_hits counts."""
        with self.hits_lock:
            (pk, by), (a, b) = self.retired_default, observe.default_hits(self.maps)
        return pk + a, by + b


def _lpm_delta(cur: BankState, new: Wanted, active: BankState | None,
               ) -> tuple[list[tuple[tuple[int, int, int], int]], list[tuple[int, int, int]]]:
    """The prefixes to write (with their classes) and to delete to turn what bank `cur`
    holds into `new.lpm`. When `new` was compiled from `cur`'s prefixes, or from the active
    bank's which were compiled from `cur`'s, only the prefixes touched on the way are
    looked at; else the whole tables are compared."""
    if cur.lpm is new.lpm:
        return [], []
    keys = None
    if new.lpm_touched is not None:
        if new.lpm_base is cur.lpm:
            keys = new.lpm_touched
        elif (active is not None and active.lpm is new.lpm_base
              and active.lpm_base is cur.lpm and active.lpm_touched is not None):
            keys = active.lpm_touched | new.lpm_touched
    want, have = new.lpm, cur.lpm
    if keys is None:
        if not have:
            return list(want.items()), []
        return list(want.items() - have.items()), list(have.keys() - want.keys())
    changed = [(k, want[k]) for k in keys if k in want and have.get(k) != want[k]]
    gone = [k for k in keys if k not in want and k in have]
    return changed, gone


def _map_error(e: OSError) -> XgError:
    if e.errno in (errno.E2BIG, errno.ENOSPC, errno.ENOMEM):
        return XgError("apply policy", "(maps)", f"a map is full: {e.strerror}",
                       "the old policy stays in force; load the filter with larger sizes "
                       "(e.g. more prefixes) or shrink the sets")
    return XgError("apply policy", "(maps)", e.strerror or str(e), "the old policy stays in force")
