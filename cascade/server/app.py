"""The app factory: engine, queues, middleware (body limit, metrics, security headers) and the
error handlers that turn every failure into one JSON object with no stack trace."""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade.core.errors import BadIndexError, CascadeError, NotOffered
from cascade.index.lock import WriterBusy
from cascade.server.admission import Admission, Busy, TimedOut
from cascade.server.auth import AuthError
from cascade.server.config import ServerConfig
from cascade.server.engine import Engine, LimitError
from cascade.server.metrics import Metrics

log = logging.getLogger("cascade.server")
ASGIApp = Callable[..., Awaitable[None]]
PAGE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                (b"content-security-policy",
                 b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
                 b"frame-ancestors 'none'")]


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"status", "code", "message"}}``."""
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status, headers=headers)


class BodyTooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware: refuses bodies over ``max_body`` (413), records metrics, adds
    security headers. (Starlette's BaseHTTPMiddleware would cost a task per request.)"""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, receive, send, status)
        else:
            await self._forward(scope, receive, send, status)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.observe(scope["method"], route, status[0], time.perf_counter() - start)

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any, status: list[int]) -> None:
        seen = [0]
        started = [False]

        async def counted_receive() -> Any:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.max_body:
                raise BodyTooLarge
            return message

        async def tracked_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status[0] = message["status"]
                extra = PAGE_HEADERS if not scope["path"].startswith("/docs") else PAGE_HEADERS[:2]  # Swagger UI: CDN
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started[0]:
                await self._too_large(scope, receive, send, status)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any, status: list[int]) -> None:
        status[0] = 413
        response = error(413, "body_too_large", f"request body over {self.max_body:,} bytes")
        await response(scope, receive, send)


def _install_handlers(app: FastAPI) -> None:
    """Map every failure to :func:`error`; log unexpected ones with their traceback server-side."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()[:5]]
        return error(422, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(AuthError)
    async def auth(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error(exc.status, "unauthorized" if exc.status == 401 else "forbidden", str(exc), headers)

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return error(429, "busy", str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(TimedOut)
    async def timed_out(_: Request, exc: TimedOut) -> JSONResponse:
        return error(503, "timeout", str(exc), {"Retry-After": "1"})

    @app.exception_handler(CascadeError)
    async def cascade_error(_: Request, exc: CascadeError) -> JSONResponse:
        if isinstance(exc, WriterBusy):
            return error(503, "writer_busy", str(exc), {"Retry-After": "1"})
        if isinstance(exc, BadIndexError):
            log.error("index problem: %s", exc)
            return error(503, "index_damaged", "the index is damaged; run `cascade check` on the server")
        return error(400, "limit" if isinstance(exc, (LimitError, NotOffered)) else "bad_request", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error(500, "internal", "internal error (logged on the server)")


def create_app(config: ServerConfig) -> FastAPI:
    """A FastAPI app serving ``config.index`` (opened now; a bad path raises CascadeError)."""
    from cascade import __version__
    from cascade.server.routes import install_routes

    engine = Engine(config)
    limits = config.limits
    app = FastAPI(title="Cascade", version=__version__, docs_url="/docs", redoc_url=None,
                  description="Multi-stage retrieval over one living index. Writes need an API key.")
    app.state.engine = engine
    app.state.searches = Admission("searches", limits.concurrency, limits.queue, limits.timeout_s)
    app.state.writes = Admission("writes", 1, limits.write_queue, limits.timeout_s)
    app.state.metrics = metrics = Metrics()
    metrics.gauges["cascade_index_generation"] = ("The commit the server reads.",
                                                  lambda: engine.snapshot().generation)
    metrics.gauges["cascade_index_documents"] = ("Live documents.", lambda: engine.snapshot().n_docs)
    metrics.gauges["cascade_queue_pending"] = ("Searches running or waiting.", lambda: app.state.searches.pending)
    metrics.gauges["cascade_queue_refused"] = ("Searches refused with 429 (a counter).",
                                               lambda: app.state.searches.refused)
    _install_handlers(app)
    install_routes(app, config)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "X-API-Key",
                                                                                    "Content-Type"])
    app.add_middleware(Guard, metrics=metrics, max_body=limits.max_body_bytes)
    app.router.on_shutdown.append(lambda: (app.state.searches.close(), app.state.writes.close()))
    return app


def app_from_env() -> FastAPI:
    """The factory ``uvicorn --factory`` calls in each worker process (``--workers N``)."""
    return create_app(ServerConfig.from_env())
