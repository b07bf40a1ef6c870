from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from console_testing import Console, console_on, running_console


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running_console(tmp_path) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db_console(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Console]:
    """The same tests on SQLite and on PostgreSQL, where storage behaviour matters (lockout, sessions)."""
    async with console_on(str(request.param), tmp_path) as running:
        yield running
