"""Liveness, without auth (for load balancers and systemd checks)."""

from __future__ import annotations

from fastapi import APIRouter

from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Say the API is up (no token needed)."""
    return Health()
