"""The policy file: every mistake is refused with its field (and line) named."""

from __future__ import annotations

import pytest

from xdpgate.control import policy as pol
from xdpgate.control.controller import NotFound, policy_without_set

GOOD = """\
default: allow
sets:
  carriers: [203.0.113.0/24, 2001:db8:100::/48]
rules:
  - name: carriers-pass
    match: {ip_set: carriers}
    action: allow
  - name: no-sip-signalling
    match: {proto: udp, dst_port: 5060-5061}
    action: drop
"""


def refused(text: str) -> pol.PolicyError:
    with pytest.raises(pol.PolicyError) as e:
        pol.from_yaml(text)
    return e.value


def test_the_documented_example_loads():
    p = pol.from_yaml(GOOD)
    assert [r.name for r in p.rules] == ["carriers-pass", "no-sip-signalling"]
    assert p.rules[1].match.port_ranges("dst_port") == [(5060, 5061)]


@pytest.mark.parametrize("bad, field, line", [
    ("default: maybe\n", "default", 1),
    ("rules:\n  - {name: a, match: {dst_port: 70000}, action: drop}\n", "rules[0].match.dst_port", 2),
    ("rules:\n  - {name: a, match: {dst_port: 9-1}, action: drop}\n", "rules[0].match.dst_port", 2),
    ("rules:\n  - {name: a, match: {proto: sctpp}, action: drop}\n", "rules[0].match.proto", 2),
    ("rules:\n  - {name: a, match: {src: 10.0.0.300/8}, action: drop}\n", "rules[0].match.src", 2),
    ("rules:\n  - {name: a, match: {colour: red}, action: drop}\n", "rules[0].match.colour", 2),
    ("rules:\n  - {name: a, action: explode}\n", "rules[0].action", 2),
    ("rules:\n  - {name: a, match: {app: [skipe]}, action: drop}\n", "rules[0].match.app", 2),
    ("rules:\n  - {name: a, match: {category: [voiper]}, action: drop}\n", "rules[0].match.category", 2),
    ("rules:\n  - {name: a, match: {call: phone}, action: drop}\n", "rules[0].match.call", 2),
    ("rules:\n  - {name: 'bad name!', action: drop}\n", "rules[0].name", 2),
    ("rules:\n  - {name: a, action: rate_limit}\n", "rules[0]", 2),
    ("rules:\n  - {name: a, action: rate_limit, rate_limit: {bps: fast}}\n",
     "rules[0].rate_limit.bps", 2),
    ("rules:\n  - {name: a, action: rate_limit, rate_limit: {bps: 1Tbit}}\n",
     "rules[0].rate_limit.bps", 2),
    ("rules:\n  - {name: a, action: rate_limit, rate_limit: {pps: 5, burst: 10000000000}}\n",
     "rules[0].rate_limit.burst", 2),
    ("sets:\n  s: [1.2.3.4/33]\n", "sets", 2),
])
def test_a_bad_field_is_named_with_its_line(bad, field, line):
    e = refused(bad)
    locs = [pol.format_loc(x["loc"]) for x in e.errors]
    assert any(loc.startswith(field) for loc in locs), (locs, e)
    assert any(x.get("line") == line for x in e.errors), e.errors


def test_an_unknown_set_and_a_duplicate_rule_name_are_refused():
    assert "unknown set 'nope'" in str(refused(
        "rules:\n  - {name: a, match: {src_set: nope}, action: drop}\n"))
    assert "duplicate rule name" in str(refused(
        "rules:\n  - {name: a, action: drop}\n  - {name: a, action: allow}\n"))


def test_src_and_src_set_together_are_ambiguous():
    assert "either src or src_set" in str(refused(
        "sets: {s: [1.0.0.0/8]}\nrules:\n  - {name: a, match: {src: 1.0.0.0/8, src_set: s}, "
        "action: drop}\n"))


def test_more_than_256_rules_are_refused():
    rules = "".join(f"  - {{name: r{i}, action: drop}}\n" for i in range(257))
    assert "rules" in str(refused("rules:\n" + rules))


def test_yaml_syntax_errors_say_where():
    e = refused("rules:\n  - {name: a, action: drop\n")
    assert e.errors[0].get("line")


def test_rates_parse_with_units():
    assert pol.parse_rate("10Mbit") == 10_000_000
    assert pol.parse_rate("1.5 Gbit") == 1_500_000_000
    assert pol.parse_rate(64000) == 64000


def test_a_set_no_rule_names_can_be_deleted_and_one_a_rule_names_cannot():
    p = pol.from_dict({"sets": {"carriers": ["203.0.113.0/24"], "spare": ["198.51.100.0/24"]},
                       "rules": [{"name": "c", "match": {"ip_set": "carriers"},
                                  "action": "allow"}]})
    assert set(policy_without_set(p, "spare").sets) == {"carriers"}
    assert set(p.sets) == {"carriers", "spare"}  # the running policy is not touched
    with pytest.raises(pol.PolicyError) as e:
        policy_without_set(p, "carriers")
    assert e.value.errors[0]["loc"] == ["sets", "carriers"]
    assert "used by a rule" in e.value.errors[0]["msg"]
    with pytest.raises(NotFound):
        policy_without_set(p, "nosuch")


def test_a_policy_file_that_is_not_there_is_named_in_a_plain_message(tmp_path):
    with pytest.raises(pol.PolicyError) as e:
        pol.load_file(tmp_path / "nope.yaml")
    assert str(e.value) == f"can't read {tmp_path / 'nope.yaml'}: No such file or directory"
