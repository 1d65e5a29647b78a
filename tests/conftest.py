"""Shared fixtures. The BPF program is compiled once per session (a bcc compile takes
seconds); tests reset flow state and counters, not the program."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def loaded_filter():
    """The data path, loaded unpinned. Fails (never skips) without root or bcc."""
    from xdpgate.control import loader

    assert os.geteuid() == 0, "the data-path tests need root (CI runs as root)"
    flt = loader.load(pin=False)
    yield flt
    flt.close()


@pytest.fixture(scope="session")
def session_dp(loaded_filter):
    """The one harness (and Applier) of the session's filter: it alone writes the policy
    banks, so it always knows what they hold."""
    from tests.harness import DP

    return DP(loaded_filter)


@pytest.fixture
def dp(session_dp):
    """A clean data path: empty flow table, zero counters, allow-all policy."""
    d = session_dp
    d.apply("default: allow")
    d.reset()
    d.config(sample_pkts=0, fail_closed=0)
    yield d
    d.reset()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    d = SHARED / "datasets"
    if not d.is_dir():
        pytest.skip("../shared/datasets is not present (evaluation only)")
    return d
