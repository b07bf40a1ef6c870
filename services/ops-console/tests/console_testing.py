"""Test support for ops-console: a running console with a frozen clock, accounts, and signing in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import ops_console
from aftersales_shared.clock import FrozenClock
from aftersales_shared.db import unit_of_work
from aftersales_shared.migrations import upgrade
from aftersales_testing import fresh_postgres_database, serve
from argon2 import PasswordHasher
from fastapi import FastAPI
from ops_console.accounts import StaffRole
from ops_console.config import Settings
from ops_console.main import create_app
from ops_console.models import StaffAccount

SERVICE_DIR = Path(ops_console.__file__).parent  # alembic.ini and migrations/
NOW = datetime.fromisoformat("2026-11-05T10:00:00+08:00")
PASSWORD = "correct horse battery"
_QUICK = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@cache
def quick_hash(password: str) -> str:
    return _QUICK.hash(password)


@dataclass
class Console:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FrozenClock

    async def add_account(
        self,
        username: str,
        roles: list[str],
        shops: list[str] | None = None,
        password: str = PASSWORD,
        display_name: str | None = None,
    ) -> None:
        """An account made directly, its password hashed with cheap Argon2id parameters (the hash names
        them, so signing in checks it quickly); accounts made through the API use the real ones."""
        now = self.clock.now()
        async with unit_of_work(self.app.state.sessions) as session:
            session.add(
                StaffAccount(
                    username=username,
                    display_name=display_name or username.title(),
                    password_hash=quick_hash(password),
                    roles=sorted(StaffRole(r).value for r in roles),
                    shops=shops,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """POST /api/session; the client keeps the cookie."""
        return await self.client.post("/api/session", json={"username": username, "password": password})

    async def browser(self, username: str, password: str = PASSWORD) -> Browser:
        """A separate client (its own cookie jar) signed in as `username`."""
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        response = await client.post("/api/session", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return Browser(client, response.json()["csrf_token"])


@dataclass
class Browser:
    """One signed-in person's browser: its cookie, and the CSRF token sent on every change."""

    client: httpx.AsyncClient
    csrf_token: str

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf_token, **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def close(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def running_console(
    tmp_path: Path,
    *,
    clock: FrozenClock | None = None,
    mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    database_url: str | None = None,
    **settings: Any,
) -> AsyncIterator[Console]:
    """A console on SQLite (or the PostgreSQL database at `database_url`) with its lifespan running."""
    if database_url is not None:
        settings.update(database_url=database_url, database_name=database_url.rsplit("/", 1)[1])
    settings.setdefault("web_dist", tmp_path / "no-web-build")
    config = Settings(data_dir=tmp_path, **settings)
    await upgrade(SERVICE_DIR, config.sqlalchemy_url)
    clock = clock or FrozenClock(NOW)
    app = create_app(config, clock=clock, mounts=mounts)
    async with serve(app) as client:
        yield Console(app, client, clock)


@asynccontextmanager
async def console_on(db: str, tmp_path: Path, **kwargs: Any) -> AsyncIterator[Console]:
    """`db` is sqlite or postgres (a fresh database on TEST_DATABASE_URL's server)."""
    if db == "sqlite":
        async with running_console(tmp_path, **kwargs) as console:
            yield console
        return
    async with (
        fresh_postgres_database("ops_console_t") as url,
        running_console(tmp_path, database_url=url, **kwargs) as console,
    ):
        yield console
