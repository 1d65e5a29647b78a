"""Namespace-lab fixtures: a fresh lab per test module, torn down even when tests fail."""

from __future__ import annotations

import secrets

import pytest

from xdpgate.control.lab import Lab


@pytest.fixture
def lab():
    lab = Lab.create("xt" + secrets.token_hex(3))
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture
def controller_factory(lab, tmp_path):
    """Start in-process controllers filtering the lab's gateway; stopped at the end."""
    from xdpgate.control.controller import Controller, RunConfig

    started = []

    def make(policy_yaml: str = "default: allow\n", **kw):
        pfile = tmp_path / f"policy{len(started)}.yaml"
        pfile.write_text(policy_yaml)
        cfg = RunConfig(ifaces=lab.gw_ifaces, policy_file=pfile, state_dir=tmp_path / "state",
                        netns=lab.gw_ns, instance=lab.prefix, **kw)
        c = Controller(cfg)
        c.start()
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop(keep=False)
