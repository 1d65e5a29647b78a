"""The README is part of the product: its quick start is what CI runs, and it carries the
project's copy of the taxonomy, which must match the code's."""

from __future__ import annotations

import re
from pathlib import Path

from xdpgate.control.classify import taxonomy

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.S | re.M)
    assert m, f"README has no section {title!r}"
    return m.group(1)


def test_the_quick_start_holds_exactly_two_commands_and_ci_runs_the_second():
    block = re.search(r"```\n(.*?)```", _section("Quick start"), re.S).group(1)
    lines = [x for x in block.splitlines() if x.strip()]
    assert len(lines) == 2
    assert "xdpgate demo" in lines[0] and "pytest" in lines[1]
    assert "vagrant/provision.sh" in lines[0] and "vagrant/provision.sh" in lines[1]
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "Quick start" in ci


def test_the_readme_lists_every_category_and_app_the_code_knows():
    text = re.sub(r"\s+", " ", _section("Categories and apps"))
    cats = re.search(r"Categories \(the `category:` match\): ([^.]*)\.", text).group(1)
    assert [c.strip() for c in cats.split(",")] == list(taxonomy.CATEGORIES)
    apps = re.search(r"Apps \(the `app:` match;[^)]*\): (.*)\.", text).group(1)
    assert [a.strip() for a in apps.split(",")] == list(taxonomy.APPS[1:])
