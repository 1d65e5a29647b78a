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

import hashlib
from dataclasses import dataclass, field

from . import layout
from .layout import W, Action, RatePer, RateUnit, Sizes, Tunnel
from .policy import PROTOS, Policy, PolicyError, Rule
from .sets import Prefix, parse_prefix

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


def memberships(sets: dict[str, list[Prefix]]) -> dict[Prefix, frozenset[str]]:
    """Prefix -> names of the sets holding it or a shorter prefix covering it.

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
        return dict.fromkeys(prefixes, frozenset((name,)))
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
    for ver, bits in ((4, 32), (6, 128)):
        order = sorted((net << 8) | plen for v, net, plen in own if v == ver)
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
            stack.append((end, m))
    return out


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
                   prev_classes: dict[frozenset[str], int] | None = None) -> Wanted:
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
    member = memberships({n: all_sets[n] for n in used if n in all_sets})
    classes: dict[frozenset[str], int] = {frozenset(): 0}
    prev = prev_classes or {}
    taken = {0}
    for ms in set(member.values()):
        if ms in prev and prev[ms] not in taken:
            classes[ms] = prev[ms]
            taken.add(prev[ms])
    nxt = 1
    for ms in sorted(set(member.values()) - set(classes), key=lambda s: sorted(s)):
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
    lpm = {p: classes[ms] for p, ms in member.items()}

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
              "nrules": len(rules)}
    return Wanted(header, rules, [r.name for r in policy.rules], fb, portbits, addrclass,
                  tunid, lpm, classes)


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


