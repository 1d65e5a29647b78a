"""Named address sets: replace, extend, shrink or delete them by name. Bodies are JSON
{"entries": [...]} or text/plain, one CIDR a line (a million lines and more)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from xdpgate.control.policy import PolicyError

from ..deps import (SET_ENTRIES_BODY, Admin, ControllerDep, IfMatch, Reader, SetEntriesBody,
                    SetName)
from ..schemas import SetChanged, SetPublic, SetSummary

router = APIRouter(prefix="/sets", tags=["sets"])
TEXT = {200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "with Accept: text/plain, one CIDR a line"}}


def _body_errors(e: PolicyError, entries: list[str] | str) -> PolicyError:
    """Point the controller's errors at the request body: JSON index or text line."""
    out = []
    for err in e.errors:
        loc = list(err.get("loc", []))
        if loc[:1] == ["entries"]:
            loc = ["body", *loc]
        elif isinstance(entries, str) and err.get("line"):
            loc = ["body"]
        out.append({**err, "loc": loc})
    return PolicyError(out)


@router.get("", response_model=list[SetSummary])
def list_sets(ctl: ControllerDep, _: Reader) -> list[dict]:
    """Every set with its entry count and where it comes from (inline, file or api)."""
    return ctl.sets_summary()


@router.get("/{name}", response_model=SetPublic, responses=TEXT)
def get_set(name: SetName, ctl: ControllerDep, _: Reader, request: Request):  # type: ignore[no-untyped-def]
    """A set's entries (JSON, or one CIDR a line with Accept: text/plain)."""
    entries = ctl.get_set(name)
    if "text/plain" in request.headers.get("accept", ""):
        def lines() -> Iterator[str]:
            for i in range(0, len(entries), 4096):
                yield "".join(e + "\n" for e in entries[i:i + 4096])
        return StreamingResponse(lines(), media_type="text/plain")
    return SetPublic(name=name, count=len(entries), entries=entries)


@router.put("/{name}", response_model=SetChanged, openapi_extra=SET_ENTRIES_BODY)
def put_set(name: SetName, entries: SetEntriesBody, ctl: ControllerDep, actor: Admin,
            if_match: IfMatch) -> SetChanged:
    """Create a set or replace all its entries at once."""
    try:
        count = ctl.put_set(name, entries, actor=actor, if_match=if_match)
    except PolicyError as e:
        raise _body_errors(e, entries) from None
    return SetChanged(name=name, count=count)


@router.delete("/{name}", response_model=SetChanged,
               responses={409: {"description": "a rule uses the set"}})
def delete_set(name: SetName, ctl: ControllerDep, actor: Admin) -> SetChanged:
    """Delete a set; 409 while a rule uses it."""
    try:
        ctl.delete_set(name, actor=actor)
    except PolicyError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return SetChanged(name=name, count=0)


@router.post("/{name}/entries", response_model=SetChanged, openapi_extra=SET_ENTRIES_BODY)
def add_entries(name: SetName, entries: SetEntriesBody, ctl: ControllerDep,
                actor: Admin) -> SetChanged:
    """Add entries to an existing set (duplicates are ignored)."""
    return _change_entries(ctl.add_set_entries, name, entries, actor)


@router.delete("/{name}/entries", response_model=SetChanged, openapi_extra=SET_ENTRIES_BODY)
def remove_entries(name: SetName, entries: SetEntriesBody, ctl: ControllerDep,
                   actor: Admin) -> SetChanged:
    """Remove entries from a set (entries it doesn't hold are ignored)."""
    return _change_entries(ctl.remove_set_entries, name, entries, actor)


def _change_entries(change: Callable[..., int], name: str, entries: Any,
                    actor: str) -> SetChanged:
    """Add or remove entries; a bad entry is a 422 naming it."""
    try:
        count = change(name, entries, actor=actor)
    except PolicyError as e:
        raise _body_errors(e, entries) from None
    return SetChanged(name=name, count=count)
