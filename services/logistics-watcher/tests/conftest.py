from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from watcher_testing import Watcher, running_watcher, watcher_on


@pytest.fixture
async def watcher(tmp_path: Path) -> AsyncIterator[Watcher]:
    async with running_watcher(tmp_path) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> str:
    """The same tests on SQLite and on PostgreSQL: the detectors are SQL, the one-open-alert rule an index."""
    return str(request.param)


@pytest.fixture
async def any_db_watcher(db: str, tmp_path: Path) -> AsyncIterator[Watcher]:
    async with watcher_on(db, tmp_path) as running:
        yield running
