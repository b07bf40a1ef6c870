from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_testing import fresh_postgres_database
from case_api.config import Settings
from case_api_testing import Api, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for running in running_api(Settings(data_dir=tmp_path), tmp_path):
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The same tests on SQLite and on PostgreSQL, where storage behaviour matters."""
    if request.param == "sqlite":
        async for running in running_api(Settings(data_dir=tmp_path), tmp_path):
            yield running
        return
    async for running in on_postgres(tmp_path):
        yield running


@pytest.fixture
async def pg_api(tmp_path: Path) -> AsyncIterator[Api]:
    """case-api on a fresh PostgreSQL database: races that SQLite's one writer would serialise (mark the
    test `postgres`)."""
    async for running in on_postgres(tmp_path):
        yield running


async def on_postgres(tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_postgres_database("case_api_t") as url:
        settings = Settings(data_dir=tmp_path, database_url=url, database_name=url.rsplit("/", 1)[1])
        async for running in running_api(settings, tmp_path):
            yield running
