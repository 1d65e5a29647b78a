"""API fixtures: the app over the in-memory fake controller, with real tokens on disk."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():  # starlette would like httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from xdpgate.api.app import create_app
from xdpgate.api.auth import ensure_tokens

from .fake import FakeController


@pytest.fixture
def ctl(tmp_path):
    return FakeController(tmp_path)


@pytest.fixture
def tokens(tmp_path):
    return ensure_tokens(tmp_path / "state")


@pytest.fixture
def app(ctl, tokens):
    return create_app(ctl, tokens, max_body=32 << 20)


def _client(app, token):
    c = TestClient(app, raise_server_exceptions=False)
    if token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


@pytest.fixture
def api(app, tokens):
    """A client holding the admin token."""
    return _client(app, tokens.admin)


@pytest.fixture
def ro(app, tokens):
    """A client holding the read-only token."""
    return _client(app, tokens.readonly)


@pytest.fixture
def anon(app):
    return _client(app, None)
