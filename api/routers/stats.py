"""Counters and the classification taxonomy."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ControllerDep, Reader
from ..schemas import ClassesPublic, StatsPublic

router = APIRouter(tags=["stats"])


@router.get("/stats", response_model=StatsPublic)
def get_stats(ctl: ControllerDep, _: Reader) -> dict:
    """Packets and bytes by action, reason, rule, app, category, tunnel and call kind."""
    return ctl.stats()


@router.get("/classes", response_model=ClassesPublic)
def get_classes(ctl: ControllerDep, _: Reader) -> dict:
    """The taxonomy: categories, apps and call kinds a rule can match."""
    return ctl.classes()
