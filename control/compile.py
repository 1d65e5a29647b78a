"""Turn a validated policy into the exact map entries the data path should hold.

Pure: no maps, no kernel. The rule evaluation in the data path intersects one
bitmap per field (bit i = rule slot i), so for every field value we compute the
mask of rules it satisfies, and for every field a wildcard mask of rules that
do not look at it. Addresses go through classes: every prefix of every set a
rule uses maps to the class of its set memberships (ancestors included, since
an LPM lookup returns only the longest match), and each class has one mask per
address role.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from dataclasses import dataclass, field

from . import layout
from .layout import W, Action, RatePer, RateUnit, Sizes, Tunnel
from .policy import PROTOS, Policy, PolicyError, Rule
from .sets import Prefix, enclosing, parse_prefix

ROLES = ("src", "dst", "any", "osrc", "odst")
ACTION_CODE = {"allow": Action.ALLOW, "drop": Action.DROP, "reject": Action.REJECT,
               "rate_limit": Action.RATE_LIMIT}
TUN_CODE = {"none": Tunnel.NONE, "gtpu": Tunnel.GTPU, "gre": Tunnel.GRE, "vxlan": Tunnel.VXLAN,
            "ipip": Tunnel.IPIP}
CALL_CODE = {"app": 1, "pstn": 2}


@dataclass
class Wanted:
    """Entries of one policy bank, bank-independent (the applier adds the bank)."""

    header: dict[str, int]
    rules: list[tuple[int, int, int, int, int]]  # action, rl_unit, rl_per, rate, burst
    rule_names: list[str]
    fieldbits: dict[int, int]  # region index -> mask
    portbits: dict[int, tuple[int, int, int]]  # port -> (src, dst, any) masks
    addrclass: dict[int, tuple[int, int, int, int, int]]  # class -> masks by ROLES
    tunid: dict[int, int]  # tunnel id -> mask
    lpm: dict[Prefix, int]  # prefix -> class
    classes: dict[frozenset[str], int] = field(default_factory=dict)
    # what the next compile starts from (AddrPlan), and how `lpm` came about: derived from
    # `lpm_base` (an earlier Wanted's lpm, never changed in place) by changing at most the
    # prefixes in `lpm_touched`; None: compiled afresh. The applier writes only those.
    plan: AddrPlan | None = None
    lpm_base: dict[Prefix, int] | None = None
    lpm_touched: set[Prefix] | None = None


@dataclass
class AddrPlan:
    """The address part of a compile, kept so that the next compile can start from it:
    a set edit then costs the prefixes it changed and those they cover, not the million
    of a big set. Never changed in place (an apply that fails leaves the old one valid)."""

    sets: dict[str, list[Prefix]]  # the sets rules use, as compiled (by identity)
    own: dict[Prefix, frozenset[str]]  # prefix -> the sets holding it
    member: dict[Prefix, frozenset[str]]  # ... or holding a prefix that covers it
    count: dict[frozenset[str], int]  # membership -> how many prefixes have it
    keys: dict[int, list[int]] | None = None  # version -> sorted (network << 8 | length)

    def sorted_keys(self) -> dict[int, list[int]]:
        if self.keys is None:
            self.keys = {v: sorted((net << 8) | plen for ver, net, plen in self.own if ver == v)
                         for v in (4, 6)}
        return self.keys

    def within(self, ver: int, net: int, plen: int) -> list[Prefix]:
        """The prefixes of the plan lying in (ver, net, plen), itself included."""
        bits = 32 if ver == 4 else 128
        ks = self.sorted_keys()[ver]
        i = bisect.bisect_left(ks, (net << 8) | plen)
        j = bisect.bisect_left(ks, (net + (1 << (bits - plen))) << 8)
        return [(ver, x >> 8, x & 0xFF) for x in ks[i:j]]


# a compile that would change more prefixes than this starts afresh (cheaper in bulk)
INCREMENTAL_MAX = 50_000


def _anon(entries: list[str]) -> str:
    return "~" + hashlib.sha1("\n".join(sorted(entries)).encode()).hexdigest()[:12]


def _role_sets(rule: Rule) -> dict[str, list[str] | None]:
    """Per address role, the names of the sets the rule requires (None: no condition)."""
    m = rule.match
    out: dict[str, list[str] | None] = {}
    for role, cidrs, names in (("src", m.src, m.src_set), ("dst", m.dst, m.dst_set),
                               ("any", m.ip, m.ip_set)):
        out[role] = [_anon(cidrs)] if cidrs is not None else (list(names) if names else None)
    for role, vals in (("osrc", m.outer_src), ("odst", m.outer_dst)):
        if vals is None:
            out[role] = None
            continue
        cidrs = [v for v in vals if "/" in v or ":" in v or v[:1].isdigit()]
        names = [v for v in vals if v not in cidrs]
        out[role] = names + ([_anon(cidrs)] if cidrs else [])
    return out


def _inline_sets(policy: Policy) -> dict[str, list[Prefix]]:
    out = {}
    for r in policy.rules:
        m = r.match
        for vals in (m.src, m.dst, m.ip, m.outer_src, m.outer_dst):
            if not vals:
                continue
            cidrs = [v for v in vals if "/" in v or ":" in v or v[:1].isdigit()]
            if cidrs:
                out[_anon(cidrs)] = [parse_prefix(c) for c in cidrs]
    return out


def address_plan(sets: dict[str, list[Prefix]]) -> AddrPlan:
    """The AddrPlan of these sets, from scratch: for each prefix, the names of the sets
    holding it or a shorter prefix covering it.

    Written for a million prefixes: memberships are interned frozensets, and each
    address family is walked once in (network, length) order with a stack of the
    enclosing prefixes.
    """
    interned: dict[frozenset[str], frozenset[str]] = {}
    unions: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}

    def union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        k = (a, b)
        r = unions.get(k)
        if r is None:
            r = a | b
            r = interned.setdefault(r, r)
            unions[k] = r
        return r

    if len(sets) == 1:  # one set (the big blocklist case): every prefix is simply in it
        (name, prefixes), = sets.items()
        own = dict.fromkeys(prefixes, frozenset((name,)))
        return AddrPlan(dict(sets), own, own, {frozenset((name,)): len(own)} if own else {})
    own: dict[Prefix, frozenset[str]] = {}
    for name, prefixes in sets.items():
        fs = interned.setdefault(frozenset((name,)), frozenset((name,)))
        if not own:
            own = dict.fromkeys(prefixes, fs)
            continue
        for p in prefixes:
            cur = own.get(p)
            own[p] = fs if cur is None else union(cur, fs)
    out: dict[Prefix, frozenset[str]] = {}
    count: dict[frozenset[str], int] = {}
    keys: dict[int, list[int]] = {}
    for ver, bits in ((4, 32), (6, 128)):
        order = keys[ver] = sorted((net << 8) | plen for v, net, plen in own if v == ver)
        stack: list[tuple[int, frozenset[str]]] = []  # (end, membership) of enclosing prefixes
        for x in order:
            net, plen = x >> 8, x & 0xFF
            end = net + (1 << (bits - plen))
            while stack and end > stack[-1][0]:
                stack.pop()
            p = (ver, net, plen)
            m = own[p]
            if stack:
                m = union(m, stack[-1][1])
            out[p] = m
            count[m] = count.get(m, 0) + 1
            stack.append((end, m))
    return AddrPlan(dict(sets), own, out, count, keys)


def _changes(prev: AddrPlan, sets: dict[str, list[Prefix]],
             hints: dict[str, tuple[list[Prefix], list[Prefix], list[Prefix]]] | None,
             ) -> list[tuple[str, list[Prefix], list[Prefix]]] | None:
    """Per set, the prefixes added and removed since `prev`; None if too many to be
    worth an update. A hint (old list, added, removed) spares the diff of a big set."""
    out = []
    n = 0
    for name in sets.keys() | prev.sets.keys():
        new, old = sets.get(name, []), prev.sets.get(name, [])
        if new is old:
            continue
        h = (hints or {}).get(name)
        if h is not None and h[0] is old:
            added, removed = h[1], h[2]
        else:
            added = [p for p in new if name not in prev.own.get(p, ())]
            keep = set(new)
            removed = [p for p in old if p not in keep]
        n += len(added) + len(removed)
        if n > INCREMENTAL_MAX:
            return None
        if added or removed:
            out.append((name, added, removed))
    return out


def _updated(prev: AddrPlan, sets: dict[str, list[Prefix]],
             changes: list[tuple[str, list[Prefix], list[Prefix]]],
             ) -> tuple[AddrPlan, dict[Prefix, frozenset[str] | None]]:
    """`prev` with these set changes, and the prefixes whose membership changed (None:
    no longer in any set). What changes is the changed prefixes and the ones they cover,
    recomputed as address_plan does, from the membership of the nearest prefix enclosing them."""
    interned = {m: m for m in prev.count}
    own = prev.own.copy()
    touched: set[Prefix] = set()
    for name, added, removed in changes:
        fs = frozenset((name,))
        for p in removed:
            cur = own.get(p)
            if cur is None or name not in cur:
                continue
            rest = cur - fs
            if rest:
                own[p] = interned.setdefault(rest, rest)
            else:
                del own[p]
            touched.add(p)
        for p in added:
            cur = own.get(p)
            if cur is not None and name in cur:
                continue
            m = cur | fs if cur is not None else fs
            own[p] = interned.setdefault(m, m)
            touched.add(p)
    new_in = [p for p in touched if p not in prev.own]
    gone = [p for p in touched if p not in own]
    keys = None  # many: sorted afresh when first needed, rather than inserted one by one
    if len(new_in) + len(gone) <= 2000:
        keys = {v: list(k) for v, k in prev.sorted_keys().items()}
        for ver, net, plen in gone:
            ks = keys[ver]
            del ks[bisect.bisect_left(ks, (net << 8) | plen)]
        for ver, net, plen in new_in:
            bisect.insort(keys[ver], (net << 8) | plen)
    plan = AddrPlan(dict(sets), own, prev.member.copy(), dict(prev.count), keys)
    member, count = plan.member, plan.count
    changed: dict[Prefix, frozenset[str] | None] = {}

    def move(p: Prefix, old: frozenset[str] | None, new: frozenset[str] | None) -> None:
        if old == new:
            return
        if old is not None:
            count[old] -= 1
            if not count[old]:
                del count[old]
        if new is not None:
            count[new] = count.get(new, 0) + 1
            member[p] = new
        else:
            del member[p]
        changed[p] = new

    last = (0, -1, -1)  # (version, end key) of the range walked last
    for p in sorted(touched):  # enclosing prefixes first
        ver, net, plen = p
        bits = 32 if ver == 4 else 128
        if (ver, (net << 8) | plen) < last[:2]:
            continue  # inside a range already walked
        outer = enclosing(own, p)
        seed = member[outer] if outer is not None else None
        stack: list[tuple[int, frozenset[str]]] = []
        for q in plan.within(ver, net, plen):
            end = q[1] + (1 << (bits - q[2]))
            while stack and end > stack[-1][0]:
                stack.pop()
            m = own[q]
            base = stack[-1][1] if stack else seed
            if base is not None and not m >= base:
                u = m | base
                m = interned.setdefault(u, u)
            move(q, member.get(q), m)
            stack.append((end, m))
        last = (ver, (net + (1 << (bits - plen))) << 8, 0)
    for p in gone:
        move(p, member.get(p), None)
    return plan, changed


def _range_masks(per_rule: list[tuple[int, list[tuple[int, int]]]]) -> dict[int, int]:
    """port -> mask of rules whose ranges include it (sweep over elementary intervals)."""
    points = sorted({lo for _, rs in per_rule for lo, _ in rs} |
                    {hi + 1 for _, rs in per_rule for _, hi in rs})
    out: dict[int, int] = {}
    for a, b in zip(points, points[1:]):
        mask = 0
        for bit, rs in per_rule:
            if any(lo <= a and b - 1 <= hi for lo, hi in rs):
                mask |= bit
        if mask:
            for port in range(a, min(b, 65536)):
                out[port] = mask
    return out


def compile_policy(policy: Policy, sets: dict[str, list[Prefix]], sizes: Sizes | None = None,
                   prev_classes: dict[frozenset[str], int] | None = None,
                   prev: Wanted | None = None,
                   hints: dict[str, tuple[list[Prefix], list[Prefix], list[Prefix]]] | None = None,
                   ) -> Wanted:
    """The entries of `policy` over the resolved `sets`. Class ids are kept from
    `prev_classes` where the membership is still there. With `prev` (the Wanted last
    applied), the addresses start from its AddrPlan and its classes: the result is the
    same as from scratch, computed from the sets' changes (`hints`: per set name, the
    list `prev` was compiled from, the prefixes added and those removed)."""
    from .classify import taxonomy

    sizes = sizes or Sizes()
    if len(policy.rules) > sizes.rule_max:
        raise PolicyError([{"loc": ["rules"], "msg": f"{len(policy.rules)} rules; this filter "
                            f"was loaded with room for {sizes.rule_max}"}])
    fb: dict[int, int] = {}
    wild = dict.fromkeys(W, 0)
    tunid: dict[int, int] = {}
    rules = []
    role_wild = dict.fromkeys(ROLES, 0)
    role_set_mask: dict[str, dict[str, int]] = {r: {} for r in ROLES}
    port_rules: dict[str, list[tuple[int, list[tuple[int, int]]]]] = {"src": [], "dst": [],
                                                                       "any": []}

    def add(idx: int, bit: int) -> None:
        fb[idx] = fb.get(idx, 0) | bit

    for i, r in enumerate(policy.rules):
        bit = 1 << i
        m = r.match
        wild[W.VALID] |= bit
        if m.proto is None:
            wild[W.PROTO] |= bit
        else:
            for p in m.proto:
                add(layout.FB_PROTO + (PROTOS[p] if isinstance(p, str) else p), bit)
        for role, wkey, name in (("src", W.SPORT, "src_port"), ("dst", W.DPORT, "dst_port"),
                                 ("any", W.APORT, "port")):
            rs = m.port_ranges(name)
            if rs is None:
                wild[wkey] |= bit
            else:
                port_rules[role].append((bit, rs))
        if m.app is None:
            wild[W.APP] |= bit
        else:
            for a in m.app:
                add(layout.FB_APP + taxonomy.app_id(a), bit)
        if m.category is None:
            wild[W.CAT] |= bit
        else:
            for c in m.category:
                add(layout.FB_CAT + taxonomy.category_id(c), bit)
        if m.call is None:
            wild[W.CALL] |= bit
        else:
            for c in m.call:
                add(layout.FB_CALL + CALL_CODE[c], bit)
        if m.app is not None or m.category is not None or m.call is not None:
            wild[W.CLASS] |= bit
        if m.tunnel is None:
            wild[W.TUN] |= bit
        else:
            for t in m.tunnel:
                add(layout.FB_TUN + TUN_CODE[t], bit)
        if m.tunnel_id is None:
            wild[W.TUNID] |= bit
        else:
            for t in m.tunnel_id:
                tunid[t] = tunid.get(t, 0) | bit
        for role, names in _role_sets(r).items():
            if names is None:
                role_wild[role] |= bit
            else:
                for n in names:
                    role_set_mask[role][n] = role_set_mask[role].get(n, 0) | bit
        rules.append(_rule_entry(r))

    for w, mask in wild.items():
        if mask and w != W.MAX:
            fb[layout.FB_WILD + w] = mask

    # ports
    by_role = {role: _range_masks(port_rules[role]) for role in ("src", "dst", "any")}
    portbits: dict[int, tuple[int, int, int]] = {}
    for port in set(by_role["src"]) | set(by_role["dst"]) | set(by_role["any"]):
        portbits[port] = (by_role["src"].get(port, 0), by_role["dst"].get(port, 0),
                          by_role["any"].get(port, 0))

    # addresses
    used = {n for role in ROLES for n in role_set_mask[role]}
    all_sets = {**sets, **_inline_sets(policy)}
    usets = {n: all_sets[n] for n in used if n in all_sets}
    plan: AddrPlan | None = None
    changed: dict[Prefix, frozenset[str] | None] | None = None
    if prev is not None and prev.plan is not None:
        prev_classes = prev.classes
        ch = _changes(prev.plan, usets, hints)
        if ch == []:
            plan, changed = dataclasses.replace(prev.plan, sets=dict(usets)), {}
        elif ch is not None:
            plan, changed = _updated(prev.plan, usets, ch)
    if plan is None:
        plan = address_plan(usets)
    classes: dict[frozenset[str], int] = {frozenset(): 0}
    prev_c = prev_classes or {}
    taken = {0}
    for ms in plan.count:
        if ms in prev_c and prev_c[ms] not in taken:
            classes[ms] = prev_c[ms]
            taken.add(prev_c[ms])
    nxt = 1
    for ms in sorted(set(plan.count) - set(classes), key=lambda s: sorted(s)):
        while nxt in taken:
            nxt += 1
        classes[ms] = nxt
        taken.add(nxt)
    if max(taken) >= sizes.addrclass_max:
        raise PolicyError([{"loc": ["sets"], "msg": f"{len(classes)} distinct set memberships; "
                            f"the filter has room for {sizes.addrclass_max}"}])
    addrclass = {}
    for ms, cid in classes.items():
        masks = []
        for role in ROLES:
            mask = role_wild[role]
            for n in ms:
                mask |= role_set_mask[role].get(n, 0)
            masks.append(mask)
        addrclass[cid] = tuple(masks)
    lpm_base: dict[Prefix, int] | None = None
    touched: set[Prefix] | None = None
    if changed is None:  # from scratch (changed is only set when starting from prev)
        if len(plan.count) == 1:  # one membership (one set): one class for all
            lpm = dict.fromkeys(plan.member, classes[next(iter(plan.count))])
        else:
            lpm = {p: classes[ms] for p, ms in plan.member.items()}
    elif not changed:
        assert prev is not None
        lpm, lpm_base, touched = prev.lpm, prev.lpm, set()
    else:
        assert prev is not None
        lpm = prev.lpm.copy()
        for p, ms in changed.items():
            if ms is None:
                del lpm[p]
            else:
                lpm[p] = classes[ms]
        lpm_base, touched = prev.lpm, set(changed)

    t = policy.tunnels
    tmask = sum(1 << TUN_CODE[n] for n in ("gtpu", "gre", "vxlan", "ipip") if getattr(t, n))
    header = {"default_action": ACTION_CODE[policy.default],
              "frag_action": ACTION_CODE[policy.fragments],
              "unparsed_action": ACTION_CODE[policy.unparsed], "tunnels": tmask,
              "flow_first": int(policy.flow_verdicts == "override"),
              "stateless": int(policy.stateless_drops),
              "class_rule_min": next((i for i, r in enumerate(policy.rules)
                                      if r.match.app is not None or r.match.category is not None
                                      or r.match.call is not None), layout.RULE_NONE),
              "nrules": len(rules),
              # what the data path must look at: a field no rule names is skipped
              "fields": sum(1 << w for w in (W.PROTO, W.SPORT, W.DPORT, W.APORT, W.APP, W.CAT,
                                             W.CALL, W.TUN, W.TUNID) if wild[w] != wild[W.VALID])}
    return Wanted(header, rules, [r.name for r in policy.rules], fb, portbits, addrclass,
                  tunid, lpm, classes, plan, lpm_base, touched)


def _rule_entry(r: Rule) -> tuple[int, int, int, int, int]:
    if r.rate_limit is None:
        return (ACTION_CODE[r.action], 0, 0, 0, 0)
    rl = r.rate_limit
    if rl.bps is not None:
        rate = max(1, int(rl.bps) // 8)  # bytes per second
        burst = rl.burst or max(rate // 10, 3000)
        unit = RateUnit.BPS
    else:
        rate = int(rl.pps or 1)
        burst = rl.burst or max(rate // 10, 10)
        unit = RateUnit.PPS
    per = RatePer.FLOW if rl.per == "flow" else RatePer.RULE
    return (ACTION_CODE[r.action], unit, per, rate, burst)


