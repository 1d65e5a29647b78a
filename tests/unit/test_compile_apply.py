"""The compiler turns rules into per-field bitmaps; the applier writes them into the
inactive bank and flips. Both driven against dict-backed maps."""

from __future__ import annotations

import ctypes as ct

import pytest

from tests.unit.fakemaps import fake_mapset
from xdpgate.control import compile as comp, layout, policy as pol, sets
from xdpgate.control.apply import Applier
from xdpgate.control.errors import XgError


def compiled(text: str) -> comp.Wanted:
    p = pol.from_yaml(text)
    return comp.compile_policy(p, sets.resolve(p))


def test_a_rule_without_address_conditions_is_a_wildcard_in_every_address_class():
    w = compiled("rules:\n  - {name: a, match: {proto: udp}, action: drop}\n")
    assert w.addrclass[0] == (1, 1, 1, 1, 1)
    assert w.fieldbits[layout.FB_PROTO + 17] == 1
    assert w.fieldbits[layout.FB_WILD + layout.W.VALID] == 1
    assert layout.FB_WILD + layout.W.PROTO not in w.fieldbits


def test_the_data_path_is_told_which_fields_the_rules_look_at():
    """It skips the others: their wildcard bitmaps hold every rule."""
    W = layout.W
    w = compiled("rules:\n  - {name: a, match: {proto: udp, dst_port: 53}, action: drop}\n"
                 "  - {name: b, match: {category: voip}, action: allow}\n")
    assert w.header["fields"] == (1 << W.PROTO) | (1 << W.DPORT) | (1 << W.CAT)
    assert compiled("rules:\n  - {name: a, match: {src: 10.0.0.0/8}, action: drop}\n"
                    ).header["fields"] == 0, "addresses are looked up by their own test"
    assert compiled("default: drop\n").header["fields"] == 0


def test_nested_prefixes_carry_their_ancestors_sets():
    w = compiled("sets: {big: [10.0.0.0/8], small: [10.1.0.0/16]}\nrules:\n"
                 "  - {name: a, match: {src_set: big}, action: drop}\n"
                 "  - {name: b, match: {src_set: small}, action: allow}\n")
    big = w.lpm[(4, 10 << 24, 8)]
    small = w.lpm[(4, (10 << 24) | (1 << 16), 16)]
    assert w.addrclass[big][0] & 0b11 == 0b01
    assert w.addrclass[small][0] & 0b11 == 0b11  # in both: LPM returns only the /16


def test_port_ranges_and_either_port():
    w = compiled("rules:\n  - {name: a, match: {dst_port: 5060-5061}, action: drop}\n"
                 "  - {name: b, match: {port: [53, 5061]}, action: drop}\n")
    assert w.portbits[5060] == (0, 1, 0)
    assert w.portbits[5061] == (0, 1, 2)
    assert w.portbits[53] == (0, 0, 2)
    assert 5062 not in w.portbits


def test_class_rules_are_marked_for_the_fail_mode():
    w = compiled("rules:\n  - {name: a, match: {category: voip}, action: drop}\n"
                 "  - {name: b, match: {app: [bittorrent]}, action: drop}\n"
                 "  - {name: c, match: {dst_port: 80}, action: allow}\n")
    assert w.fieldbits[layout.FB_WILD + layout.W.CLASS] == 0b011


def test_apply_writes_the_inactive_bank_and_flips_with_one_generation_write():
    ms = fake_mapset()
    ap = Applier(ms)
    assert ap.apply(compiled("default: drop\n")) == 1
    assert ap.active_bank() == 1
    assert ms["policy"].get(ct.c_uint32(1)).default_action == layout.Action.DROP
    assert ap.apply(compiled("default: allow\n")) == 2
    assert ap.active_bank() == 0
    assert ms["policy"].get(ct.c_uint32(1)).default_action == layout.Action.DROP  # untouched


def test_a_second_apply_of_the_same_policy_writes_only_the_generation():
    ms = fake_mapset()
    ap = Applier(ms)
    text = "sets: {s: [10.0.0.0/8, 2001:db8::/32]}\nrules:\n  - {name: a, match: {src_set: s}, action: drop}\n"
    ap.apply(compiled(text))
    ap.apply(compiled(text))
    before = {n: m.writes for n, m in ms.maps.items()}
    ap.apply(compiled(text))  # bank 1 again: it already holds exactly this
    changed = {n for n, m in ms.maps.items() if m.writes != before[n]}
    assert changed <= {"config", "policy", "rule_hits", "buckets"}, changed


def test_a_failed_apply_leaves_the_old_policy_in_force_and_is_retried_cleanly():
    ms = fake_mapset()
    ap = Applier(ms)
    ap.apply(compiled("default: allow\n"))
    gen = ap.gen
    ms["pfx4"].fail_after = ms["pfx4"].writes + 3
    big = "sets: {s: [" + ", ".join(f"10.0.{i}.0/24" for i in range(10)) + "]}\n" \
          "rules:\n  - {name: a, match: {src_set: s}, action: drop}\n"
    with pytest.raises(XgError) as e:
        ap.apply(compiled(big))
    assert "old policy stays" in str(e.value)
    assert ap.gen == gen  # no flip
    ms["pfx4"].fail_after = None
    ap.apply(compiled(big))
    assert ap.gen == gen + 1
    bank = ap.active_bank()
    keys = [k for k in ms["pfx4"].keys() if k.bank == bank and k.kind == layout.PFX_PREFIX]
    assert len(keys) == 10


def test_rule_hits_survive_bank_flips_by_rule_name():
    ms = fake_mapset()
    ap = Applier(ms)
    ap.apply(compiled("rules:\n  - {name: a, action: drop}\n"))
    base = ap.active_bank() * (ms.sizes.rule_max + 1)
    cell = (layout.Counter * 2)(layout.Counter(3, 300), layout.Counter(2, 200))
    ms["rule_hits"].set(ct.c_uint32(base), cell)
    ms["rule_hits"].set(ct.c_uint32(base + ms.sizes.rule_max), cell)  # the default's
    ap.apply(compiled("rules:\n  - {name: b, action: drop}\n  - {name: a, action: drop}\n"))
    assert ap.rule_hits()["a"] == (5, 500)  # still in the inactive bank
    assert ap.default_hits() == (5, 500)
    ap.apply(compiled("rules:\n  - {name: c, action: drop}\n"))  # retires the first bank
    assert ap.rule_hits()["a"] == (5, 500)
    assert ap.default_hits() == (5, 500)
    assert all(v.pkts == 0 for v in ms["rule_hits"].get(ct.c_uint32(base)))
