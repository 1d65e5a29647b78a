"""Live flows from the data path's flow table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import ControllerDep, Reader
from ..schemas import FlowPublic, FlowQuery

router = APIRouter(tags=["flows"])


@router.get("/flows", response_model=list[FlowPublic])
def list_flows(q: Annotated[FlowQuery, Query()], ctl: ControllerDep, _: Reader) -> list[dict]:
    """Flows (both directions, packets, bytes, age, TCP flags, class, verdict), filtered and sorted."""
    return ctl.flows(**q.model_dump())
