"""The app factory: `create_app(controller, tokens)` builds the REST API over a controller.

Routers are thin: they translate HTTP to controller calls. Errors map in one place:
PolicyError -> 422 (field path named), NotFound -> 404, ConflictError (If-Match) -> 412,
XgError -> 409 on a change the system refused, 503 when a read can't reach the data path.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xdpgate.control import __version__
from xdpgate.control.controller import ConflictError, NotFound
from xdpgate.control.errors import XgError
from xdpgate.control.metrics import Metrics
from xdpgate.control.policy import PolicyError

from .auth import Tokens
from .schemas import ErrorPublic
from .routers import flows, health, metrics, policy, rules, sets, stats, status

API_PREFIX = "/api/v1"
MiB = 1 << 20
READS = ("GET", "HEAD", "OPTIONS")
_E = {"model": ErrorPublic}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_E, "description": "the body could not be parsed (e.g. not UTF-8 JSON)"},
    401: {**_E, "description": "no token, or not one of ours"},
    403: {**_E, "description": "the read-only token tried a change"},
    404: {**_E, "description": "no rule, set or interface of that name"},
    409: {**_E, "description": "the system refused the change (or the name exists)"},
    412: {**_E, "description": "If-Match names an older policy"},
    413: {**_E, "description": "request body over the limit"},
    415: {**_E, "description": "unsupported body type"},
    422: {**_E, "description": "invalid input; `loc` names the field"},
    503: {**_E, "description": "the data path could not be read"},
}


def _detail(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI-shaped error items, without echoing (possibly huge) input back."""
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")).removeprefix(
            "Value error, "), "type": e.get("type", "value_error")}
        if e.get("line"):
            item["line"] = e["line"]
        out.append(item)
    return out


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _detail(list(exc.errors()))}, status_code=422)

    @app.exception_handler(PolicyError)
    async def _policy(_: Request, exc: PolicyError) -> JSONResponse:
        return JSONResponse({"detail": _detail(exc.errors)}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=412)

    @app.exception_handler(XgError)
    async def _xg(request: Request, exc: XgError) -> JSONResponse:
        code = getattr(exc, "http_status", None) or (503 if request.method in READS else 409)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Allow: every method of the path, not just one route's
            methods = {m for rx, ms in app.state.route_methods if rx.match(request.url.path)
                       for m in ms}
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=headers or None)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (the limit is {limit} bytes)")


class BodyLimit:
    """413 for a body over `limit`: at once from Content-Length, else while it streams in
    (the route's read raises, so nothing has been applied)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                exc = BodyTooLarge(self.limit)
                await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


class RequestMetrics:
    """Counts every request by route template, method and status (pure ASGI middleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, paths: dict[int, str]) -> None:
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            r = scope.get("route")
            route = self.paths.get(id(r)) or getattr(r, "path", None) or "<unmatched>"
            self.metrics.observe_request(route, scope["method"], code,
                                         time.perf_counter() - start)


def create_app(controller: Any, tokens: Tokens, *, max_body: int = 64 * MiB) -> FastAPI:
    """The REST API over `controller`, guarded by `tokens`; bodies over `max_body` get 413."""
    app = FastAPI(title="xdpgate", version=__version__,
                  description="Application-aware XDP packet filter: policy, rules, sets, "
                              "flows and counters. Every endpoint but /healthz needs "
                              "`Authorization: Bearer <token>` (STATE_DIR/tokens/).")
    app.state.controller = controller
    app.state.tokens = tokens
    m = getattr(controller, "metrics", None)
    if m is None:
        m = Metrics(controller)
    else:
        m.bind(controller)
    app.state.metrics = m
    _install_error_handlers(app)
    paths: dict[int, str] = {}  # route -> full path template, for the request metrics
    app.state.route_methods = []  # (path regex, methods), for 405's Allow
    for router, prefix in ((health.router, ""), (metrics.router, ""), (status.router, API_PREFIX),
                           (policy.router, API_PREFIX), (rules.router, API_PREFIX),
                           (sets.router, API_PREFIX), (flows.router, API_PREFIX),
                           (stats.router, API_PREFIX)):
        app.include_router(router, prefix=prefix,
                           responses={} if router is health.router else ERRORS)
        for rt in router.routes:
            paths[id(rt)] = prefix + rt.path  # type: ignore[attr-defined]
            app.state.route_methods.append((compile_path(prefix + rt.path)[0],  # type: ignore
                                            rt.methods))  # type: ignore[attr-defined]
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(RequestMetrics, metrics=m, paths=paths)
    return app
