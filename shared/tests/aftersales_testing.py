"""Helpers for the services' tests (imports pytest, so kept out of the runtime package): run an app with
its lifespan, keys per role, infrastructure switches, the test broker."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aftersales_shared.auth import Role, create_key
from aftersales_shared.bus import Bus
from aftersales_shared.clock import FrozenClock
from aftersales_shared.db import unit_of_work
from aftersales_shared.testing_kafka import BrokerAccess, broker_access
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@dataclass(frozen=True)
class Keys:
    """One key per role for shop-a, a storefront key for shop-b, and an all-roles admin."""

    storefront: str
    storefront_b: str
    warehouse: str
    support: str
    ops: str
    support_b: str
    admin: str

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, name)}"}


@dataclass
class RunningService:
    """A service app with its lifespan running, a frozen clock, its bus, and a key per role."""

    app: FastAPI
    client: httpx.AsyncClient
    keys: Keys
    clock: FrozenClock
    bus: Bus

    async def call(self, method: str, path: str, who: str = "admin", **kwargs: Any) -> httpx.Response:
        """A request as the key named `who` (see Keys)."""
        headers = {**self.keys.auth(who), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def metrics(self) -> Metrics:
        return await scrape(self.client)


@dataclass(frozen=True)
class Metrics:
    """One scrape of /metrics."""

    samples: list[Sample]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        """The samples named `name` with these labels (among others)."""
        return [s for s in self.samples if s.name == name and labels.items() <= s.labels.items()]

    def value(self, name: str, **labels: str) -> float:
        """The one sample named `name` with these labels (among others)."""
        found = [s.value for s in self.matching(name, **labels)]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples of {name}{labels}")
        return found[0]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` with these labels, 0 if none (for counters, which the
        process keeps across the apps of a test run: compare two scrapes)."""
        return sum(s.value for s in self.matching(name, **labels))

    def labels(self, name: str, label: str, **where: str) -> set[str]:
        """The values of `label` among the samples named `name` with the labels `where`."""
        return {s.labels[label] for s in self.matching(name, **where) if label in s.labels}


async def scrape(client: httpx.AsyncClient) -> Metrics:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Metrics([s for family in text_string_to_metric_families(response.text) for s in family.samples])


async def make_keys(app: FastAPI, now: object) -> Keys:
    specs = {
        "storefront": ([Role.storefront], ["shop-a"]),
        "storefront_b": ([Role.storefront], ["shop-b"]),
        "warehouse": ([Role.warehouse], ["shop-a"]),
        "support": ([Role.support], ["shop-a"]),
        "ops": ([Role.ops], ["shop-a"]),
        "support_b": ([Role.support], ["shop-b"]),
        "admin": (list(Role), None),
    }
    secrets: dict[str, str] = {}
    async with unit_of_work(app.state.sessions) as session:
        for name, (roles, shops) in specs.items():
            _, secrets[name] = await create_key(session, name=name, roles=roles, shops=shops, now=now)  # type: ignore[arg-type]
    return Keys(**secrets)


def free_port() -> int:
    """A TCP port free on this host now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def infra_missing(what: str, hint: str) -> None:
    """Skip on a laptop without the infrastructure; fail in CI (REQUIRE_INFRA=1), where it must run."""
    message = f"{what} is not available: {hint}"
    if os.environ.get("REQUIRE_INFRA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def fresh_postgres_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database on TEST_DATABASE_URL's server, dropped afterwards; yields its URL."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        infra_missing(
            "PostgreSQL", "run `make pg-up` and export TEST_DATABASE_URL=$(infra/postgres/pg.sh url)"
        )
        raise AssertionError("unreachable")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@asynccontextmanager
async def tables_on(backend: str, tmp_path: Path, prefix: str, tables: list[Any]) -> AsyncIterator[Any]:
    """Sessions on a fresh SQLite file ("sqlite") or PostgreSQL database holding just these tables."""
    from aftersales_shared.db import make_engine, session_factory
    from sqlmodel import SQLModel

    async with AsyncExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/{prefix}.db"
        else:
            url = await stack.enter_async_context(fresh_postgres_database(prefix))
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync, tables=tables))
            yield session_factory(engine)
        finally:
            await engine.dispose()


async def check_migrations(service_dir: Path, metadata: MetaData, url: str) -> list[Any]:
    """Upgrade to head, return the differences between the models and the migrated schema (none
    expected), then downgrade to base and upgrade again: the history is revertable."""
    from aftersales_shared.migrations import alembic_config, upgrade
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    await upgrade(service_dir, url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    config = alembic_config(service_dir, url)
    await asyncio.to_thread(command.downgrade, config, "base")
    await upgrade(service_dir, url)
    return list(diff)


def service_metadata(package: str) -> MetaData:
    """The tables of one service (its models and the shared ones), apart from other services' models
    imported into the same test process."""
    from sqlmodel import SQLModel

    metadata = MetaData()
    for mapper in SQLModel._sa_registry.mappers:
        table = mapper.local_table
        if mapper.class_.__module__.startswith((package + ".", "aftersales_shared.")) and isinstance(
            table, Table
        ):
            table.to_metadata(metadata)
    return metadata


def fuzz_openapi(
    service: str, tmp_path: Path, *, max_examples: int = 25, seed: int = 20261126, timeout: float = 900
) -> None:
    """Start `<service> serve` (the embedded default, a development key with every role) on a free port
    and run schemathesis against its own OpenAPI document over real HTTP: fail, with the end of both
    outputs, if any generated request gets a 5xx."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DEV_API_KEY": "fuzz-key",
        f"{service.upper().replace('-', '_')}_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    for variable in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "ENVIRONMENT"):
        env.pop(variable, None)
    bin_dir = Path(sys.executable).parent
    server_log = tmp_path / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / service), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    started = server_log.read_text()[-4000:]
                    raise AssertionError(f"{service} did not start:\n{started}") from None
                time.sleep(0.1)
        result = subprocess.run(
            [
                str(bin_dir / "schemathesis"),
                "run",
                base + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "-H",
                "Authorization: Bearer fuzz-key",
                "--max-examples",
                str(max_examples),
                "--seed",
                str(seed),
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + server_log.read_text()[-4000:]
    finally:
        server.terminate()
        server.wait(timeout=10)


def kafka_broker() -> BrokerAccess:
    """TEST_KAFKA_BOOTSTRAP_SERVERS's broker; without one, the test skips (fails in CI)."""
    servers = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        infra_missing(
            "Apache Kafka", "run `make kafka-up` and export TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092"
        )
    return broker_access(servers or "")


def this_request(response: httpx.Response) -> bytes:
    """A problem's body without its `instance`, once that is checked to name this very request (its
    X-Request-ID): what two answers that must not tell two things apart are compared by."""
    instance = f',"instance":"urn:request:{response.headers["x-request-id"]}"'.encode()
    assert response.content.count(instance) == 1, response.text
    return response.content.replace(instance, b"")
