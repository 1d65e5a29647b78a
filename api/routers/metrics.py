"""Prometheus scrape endpoint (text exposition format)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..deps import Reader

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
def metrics(request: Request, _: Reader) -> Response:
    """Every data-path counter, policy version and load errors, sampler drops, API requests."""
    body, ctype = request.app.state.metrics.render()
    return Response(body, media_type=ctype)
