"""The whole policy: read it with its ETag, replace it atomically, or dry-run it."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import Admin, ControllerDep, IfMatch, Reader
from ..schemas import Changed, Policy, ValidationReport

router = APIRouter(prefix="/policy", tags=["policy"])


@router.get("", response_model=Policy, response_model_exclude_none=True)
def get_policy(ctl: ControllerDep, _: Reader, response: Response) -> Policy:
    """The running policy (the policy file's format as JSON); its ETag is in the header."""
    policy, etag = ctl.get_policy()
    response.headers["ETag"] = etag
    return policy


@router.put("", response_model=Changed, responses={412: {"description": "If-Match mismatch"}})
def put_policy(policy: Policy, ctl: ControllerDep, actor: Admin, if_match: IfMatch,
               response: Response) -> Changed:
    """Replace the whole policy atomically; send If-Match with the ETag you read."""
    etag = ctl.apply_policy(policy, actor=actor, if_match=if_match)
    response.headers["ETag"] = etag
    return Changed(etag=etag)


@router.post("/validate", response_model=ValidationReport)
def validate_policy(policy: Policy, ctl: ControllerDep, _: Reader) -> ValidationReport:
    """Check a policy as PUT would (sets, sizes, compile) without applying it."""
    return ValidationReport(warnings=ctl.validate_policy(policy))
