"""What every service's HTTP app shares: sessions, the caller, problem responses, health and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Principal, authenticate
from .problems import install_problem_handlers

log = logging.getLogger(__name__)

REQUEST_LATENCY = Histogram(
    "http_request_duration_seconds",
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
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    return await authenticate(session, authorization)


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


def configure_app(app: FastAPI, service: str) -> None:
    install_problem_handlers(app)
    app.add_middleware(RequestMetrics, service=service)
