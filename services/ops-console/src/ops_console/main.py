"""ops-console: the support workbench's backend: staff sign-in, sessions, the staff token, a same-origin
proxy to the three services, and the built web app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from aftersales_shared.clock import Clock, SystemClock
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.logging import configure_logging
from aftersales_shared.web import configure_app, database_check, ops_router
from fastapi import FastAPI

from .accounts import StaffRole, create_account, no_account_yet
from .api import accounts, proxy, session
from .config import Settings
from .spa import mount_spa
from .tokens import signing_key

log = logging.getLogger(__name__)
FIRST_ADMIN = "admin"

DESCRIPTION = """The support workbench's backend. Staff sign in with `POST /api/session` (an HttpOnly,
SameSite=Strict session cookie and a CSRF token to send as `X-CSRF-Token` on every POST, PUT, PATCH and
DELETE); `/api/case-api/v1/...`, `/api/logistics-watcher/v1/...` and `/api/payout-worker/v1/...` call the
services for the signed-in person with a short-lived signed staff token; admins manage `/api/accounts`.
Errors are `application/problem+json`, the services' passed through unchanged."""


async def ensure_first_admin(app: FastAPI, settings: Settings) -> None:
    """The embedded default's first admin (`make run`): `admin` with DEV_ADMIN_PASSWORD, while no account
    exists at all."""
    if settings.dev_admin_password is None:
        return
    async with unit_of_work(app.state.sessions) as db:
        if await no_account_yet(db):
            await create_account(
                db,
                username=FIRST_ADMIN,
                display_name="Administrator",
                password=settings.dev_admin_password.get_secret_value(),
                roles=[StaffRole.admin, StaffRole.support, StaffRole.ops],
                shops=None,
                now=app.state.clock.now(),
            )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """`mounts` route the proxy's calls to other transports (tests: the services in-process)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.service_name)
        engine = make_engine(settings.sqlalchemy_url)
        app.state.sessions = session_factory(engine)
        app.state.token_key = signing_key(settings)  # a bad key stops the start, not a request
        app.state.upstream = httpx.AsyncClient(
            timeout=settings.upstream_timeout_seconds, mounts=dict(mounts or {}), follow_redirects=False
        )
        try:
            await ensure_first_admin(app, settings)
            yield
        finally:
            await app.state.upstream.aclose()
            await engine.dispose()

    app = FastAPI(title="ops-console", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.token_lifetime = timedelta(seconds=settings.token_lifetime_seconds)
    configure_app(
        app,
        settings.service_name,
        settings.max_body_bytes,
        {"/api/case-api/v1/evidence": settings.max_upload_bytes},
    )

    async def db_check() -> None:
        await database_check(app)

    async def no_gauges() -> None:
        return None

    app.include_router(ops_router(settings.service_name, {"database": db_check}, no_gauges))
    for router in (session.router, accounts.router, proxy.router):
        app.include_router(router)
    mount_spa(app, settings.web_dist)
    return app
