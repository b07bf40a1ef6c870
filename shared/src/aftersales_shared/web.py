"""What every service's HTTP app shares: sessions, the caller, problem responses, health and metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Principal, authenticate
from .logging import log_context
from .problems import Problem, install_problem_handlers, internal_error, problem_response

log = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "aftersales_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session per request; the endpoint commits once, anything uncommitted rolls back."""
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_principal(
    request: Request, session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return await authenticate(
        session,
        authorization,
        now=request.app.state.clock.now(),
        staff_tokens=getattr(request.app.state, "staff_tokens", None),
        cache=getattr(request.app.state, "principal_cache", None),
    )


PrincipalDep = Annotated[Principal, Depends(current_principal)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="replays return the first answer")
]

Check = Callable[[], Awaitable[Any]]


def ops_router(service: str, checks: dict[str, Check], refresh_gauges: Check) -> APIRouter:
    """/healthz (process up), /readyz (each dependency answers), /metrics (Prometheus; the gauges read
    from the database are refreshed first, and left out of the scrape while it does not answer)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"failing: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        try:
            await refresh_gauges()
        except Exception as exc:
            log.warning("metrics: the database gauges could not be read (%s)", type(exc).__name__)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def database_check(app: FastAPI) -> None:
    async with app.state.sessions() as session:
        await session.exec(text("SELECT 1"))


class RequestMetrics:
    """Pure ASGI middleware observing each request's latency by route and status (cheaper than
    BaseHTTPMiddleware, which copies every response through a second task)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUEST_LATENCY.labels(self.service, scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class RequestId:
    """Pure ASGI middleware: the caller's `X-Request-ID` (printable, at most 128 characters) or a new one,
    echoed on the response, on every log line written while the request is served, and as the `instance`
    of a problem answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                # Answered here rather than by the server's last resort, so that the 500 and its log line
                # carry the id too.
                if started:
                    raise
                log.exception("unhandled error", extra={"path": scope["path"]})
                await problem_response(internal_error())(scope, receive, send_with_id)


class BodyTooLarge(Exception):
    """Raised into the app by BodyLimit's receive when a body passes its limit."""


class BodyLimit:
    """Pure ASGI middleware refusing a request body over its limit with 413 problem+json: at once when
    Content-Length says so, otherwise as soon as the bytes received (a chunked body) pass it, so that no
    caller can make a service hold a body of any size. `limits` maps path prefixes to their own limit (an
    upload endpoint); every other path has `default`."""

    def __init__(self, app: ASGIApp, default: int, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # whatever the app made of the interrupted body: the 413 below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        problem = Problem(
            413,
            "body_too_large",
            "Request body too large",
            f"this endpoint takes bodies of at most {limit} bytes",
            limit=limit,
        )
        # The rest of the body is not read: the connection is closed after the answer.
        await problem_response(problem, headers={"Connection": "close"})(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def configure_app(
    app: FastAPI, service: str, max_body_bytes: int, body_limits: Mapping[str, int] | None = None
) -> None:
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, default=max_body_bytes, limits=body_limits)
    app.add_middleware(RequestMetrics, service=service)  # it also times the 413s
    app.add_middleware(RequestId)  # outermost: every answer and every line logged carry the id
