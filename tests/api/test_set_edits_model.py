"""Set edits through the controller, as the REST API makes them, against a plain list: random
sequences of entries added (new ones and repeats), removed (members and strangers, a few
and many: a few are cut out of the set file line by line, many filtered in one pass), and
whole sets put, on sets big enough to be kept as files in the state dir and crossing that
size both ways, with and without a rule naming the set. After every edit the set holds
exactly the list's entries in its order, its file says the same, and packets from the
entries the edit named get the rule's verdict (root; fails, never skips)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.datapath import frames as fr
from tests.harness import XDP_DROP, XDP_PASS, idle_controller
from xdpgate.control import bpfsys
from xdpgate.control.controller import INLINE_SET_MAX
from xdpgate.control.policy import Rule, SetFile
from xdpgate.control.sets import parse_prefix, prefix_str

pytestmark = pytest.mark.privileged

EDITS = settings(max_examples=20, derandomize=True, deadline=None, database=None,
                 phases=[Phase.explicit, Phase.generate],
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    """A started controller on no interface (its program is run by test-run)."""
    with idle_controller(tmp_path_factory.mktemp("setedits"), "se") as c:
        yield c


# entries: IPv4 /32s and /24s in 10.64.0.0/10 and IPv6 /128s, as the API takes them
ENTRY = st.one_of(
    st.integers(0, 2**22 - 1).map(lambda i: f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32"),
    st.integers(0, 2**14 - 1).map(lambda i: f"10.{64 + (i >> 8)}.{i & 255}.0/24"),
    st.integers(0, 2**16 - 1).map(lambda i: f"2001:db8:77::{i:x}/128"),
)
SIZE = st.sampled_from([INLINE_SET_MAX - 5, INLINE_SET_MAX + 1, INLINE_SET_MAX + 30])


@st.composite
def edit(draw, members: list[str]):
    op = draw(st.sampled_from(["add", "add", "remove", "remove", "put"]))
    n = draw(st.sampled_from([1, 2, 15, 16, 17, 40]))
    if op == "put":
        return op, draw(st.lists(ENTRY, min_size=draw(SIZE), max_size=INLINE_SET_MAX + 30,
                                 unique=True))
    # n distinct members (to remove, or to add again) and up to n strangers
    k = min(n, len(members))
    known = draw(st.lists(st.sampled_from(members), min_size=k, max_size=k, unique=True)) \
        if k else []
    return op, known + draw(st.lists(ENTRY, min_size=0 if known else 1, max_size=n))


def canonical(entries: list[str]) -> list[str]:
    return [prefix_str(parse_prefix(e)) for e in entries]


def verdict_of(ctl, src: str) -> int:
    peer = fr.S6 if ":" in src else fr.S4
    rv, _, _ = bpfsys.test_run(ctl.filter.prog_fd, bytes(fr.udp(src, peer, sport=41000)))
    return rv


_names = iter(range(10**6))


@EDITS
@given(data=st.data())
def test_a_set_edited_in_any_order_holds_what_a_plain_list_holds(ctl, data):
    name = f"m{next(_names)}"
    model = list(dict.fromkeys(canonical(data.draw(
        st.lists(ENTRY, min_size=data.draw(SIZE, "size"), max_size=INLINE_SET_MAX + 30,
                 unique=True),
        "entries"))))
    assert ctl.put_set(name, model, actor="test") == len(model)
    ruled = data.draw(st.booleans(), "a rule names the set")
    if ruled:
        ctl.edit_policy(lambda p: p.model_copy(update={"rules": [*p.rules, Rule(
            name=f"blk-{name}", match={"src_set": [name]}, action="drop")]}),
            actor="test", what="rule")
    try:
        for _ in range(data.draw(st.integers(1, 6), "edits")):
            op, entries = data.draw(edit(model), "edit")
            entries = canonical(entries)
            if op == "put":
                model = list(dict.fromkeys(entries))
                got = ctl.put_set(name, entries, actor="test")
            elif op == "add":
                have = set(model)
                model += [e for e in dict.fromkeys(entries) if e not in have]
                got = ctl.add_set_entries(name, entries, actor="test")
            else:
                gone = set(entries)
                model = [e for e in model if e not in gone]
                got = ctl.remove_set_entries(name, entries, actor="test")
            assert got == len(model), op
            assert ctl.get_set(name) == model, f"after {op} of {len(entries)}"
            d = ctl.policy.sets[name]
            if isinstance(d, SetFile):
                text = Path(d.file).read_text()
                assert text == "".join(e + "\n" for e in model), f"the set file after {op}"
            if ruled:
                nets = [ipaddress.ip_network(e) for e in model]
                for e in entries[:3]:
                    a = ipaddress.ip_address(e.split("/")[0])
                    want = XDP_DROP if any(a in n for n in nets) else XDP_PASS
                    assert verdict_of(ctl, str(a)) == want, f"{a} after {op} of {e}"
    finally:
        ctl.edit_policy(lambda p: p.model_copy(update={"rules": [
            r for r in p.rules if r.name != f"blk-{name}"]}), actor="test", what="rule")
        ctl.delete_set(name, actor="test")
