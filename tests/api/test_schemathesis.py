"""Property-based: requests generated from the app's own OpenAPI schema never get a 5xx,
and every response conforms to the schema (status codes, content types, bodies)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from xdpgate.api.app import create_app
from xdpgate.api.auth import ensure_tokens

from .fake import FakeController

_STATE = Path(tempfile.mkdtemp(prefix="xg-schemathesis-"))
TOKENS = ensure_tokens(_STATE / "state")
APP = create_app(FakeController(_STATE), TOKENS, max_body=1 << 20)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_5xx_and_conforming_responses(case):
    # A schema-valid request may still be refused on meaning (a stale If-Match is 412, an
    # unknown rule 404, a port range 70000 422): that check is left out. So is the converse
    # for now: policy.py's models are lax (0 is accepted for a boolean), which the schema
    # can't say. Everything else (no 5xx, documented codes, bodies, headers) is checked.
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS.admin}"},
                           excluded_checks=[positive_data_acceptance, negative_data_rejection])
