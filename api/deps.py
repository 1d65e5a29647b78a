"""What routes depend on, as Annotated types: the controller, the caller's role, If-Match,
rule placement and set-entry bodies (JSON or text/plain, read as a stream)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from xdpgate.control.controller import Controller
from xdpgate.control.policy import NAME_RE

from .auth import Tokens
from .schemas import SetEntries

def get_controller(request: Request) -> Controller:
    return request.app.state.controller


ControllerDep = Annotated[Controller, Depends(get_controller)]

_bearer = HTTPBearer(auto_error=False, description="the admin or read-only token from "
                     "STATE_DIR/tokens/admin or STATE_DIR/tokens/readonly")


def reader(request: Request,
           cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The caller's role ('admin' or 'readonly'); 401 without a known token."""
    tokens: Tokens = request.app.state.tokens
    actor = tokens.actor(cred.credentials) if cred is not None else None
    if actor is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing or unknown token: send Authorization: Bearer <token> "
                            "(STATE_DIR/tokens/admin or .../readonly)",
                            headers={"WWW-Authenticate": "Bearer"})
    return actor


def admin(actor: Annotated[str, Depends(reader)]) -> str:
    """The caller's role, which must be 'admin'; 403 for the read-only token."""
    if actor != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "the read-only token can't change anything; use the admin token")
    return actor


Reader = Annotated[str, Depends(reader)]
Admin = Annotated[str, Depends(admin)]


def if_match(value: Annotated[str | None, Header(
        alias="If-Match", description='the ETag of the policy this change is based on, or "*"')]
        = None) -> str | None:
    """If-Match as the controller compares it: a quoted strong tag, '*' or None."""
    if value is None:
        return None
    v = value.strip().removeprefix("W/")
    if v == "*":
        return v
    return v if v.startswith('"') else f'"{v}"'


IfMatch = Annotated[str | None, Depends(if_match)]

RuleName = Annotated[str, Path(pattern=NAME_RE, description="the rule's name")]
SetName = Annotated[str, Path(pattern=NAME_RE, description="the set's name")]


class Placement:
    """Where a rule goes: ?position=N (0-based), ?before=RULE or ?after=RULE; default last."""

    def __init__(self,
                 position: Annotated[int | None, Query(ge=0, le=10_000,
                                                       description="0-based index")] = None,
                 before: Annotated[str | None, Query(pattern=NAME_RE)] = None,
                 after: Annotated[str | None, Query(pattern=NAME_RE)] = None) -> None:
        given = [k for k, v in (("position", position), ("before", before), ("after", after))
                 if v is not None]
        if len(given) > 1:
            raise RequestValidationError([{"type": "value_error", "loc": ["query", given[1]],
                                           "msg": f"give one of position, before, after "
                                                  f"(got {', '.join(given)})"}])
        self.position, self.before, self.after = position, before, after

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.position, self.before, self.after))


PlacementDep = Annotated[Placement, Depends()]

TEXT_TYPES = ("text/plain",)
SET_ENTRIES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'JSON {"entries": [...]} or text/plain with one CIDR a line '
                       "(blank lines and # comments are skipped)",
        "content": {
            "application/json": {"schema": SetEntries.model_json_schema()},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


async def set_entries(request: Request) -> list[str] | str:
    """A set-entries body: a list from JSON, or the text itself (not split) for text/plain."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in TEXT_TYPES and ctype != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send application/json {\"entries\": [...]} or text/plain, "
                            "one CIDR a line")
    buf = bytearray()
    async for chunk in request.stream():  # app.BodyLimit bounds this (413)
        buf += chunk
    if ctype in TEXT_TYPES:
        try:
            return buf.decode()
        except UnicodeDecodeError as e:
            raise RequestValidationError([{"type": "value_error", "loc": ["body"],
                                           "msg": f"not UTF-8 text (byte {e.start})"}]) from None
    try:
        return SetEntries.model_validate_json(bytes(buf)).entries
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ["body", *err["loc"]]}
                                      for err in e.errors(include_url=False,
                                                          include_input=False)]) from None


SetEntriesBody = Annotated[list[str] | str, Depends(set_entries)]

