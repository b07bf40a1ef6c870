"""The Alembic history matches the models on SQLite and PostgreSQL, and is revertable."""

from __future__ import annotations

from pathlib import Path

import case_api
import pytest
from aftersales_testing import check_migrations, fresh_postgres_database, service_metadata
from case_api import models  # noqa: F401  (registers the tables)

SERVICE_DIR = Path(case_api.__file__).parent  # alembic.ini and migrations/


class TestMigrations:
    async def test_sqlite(self, tmp_path: Path) -> None:
        assert (
            await check_migrations(
                SERVICE_DIR, service_metadata("case_api"), f"sqlite+aiosqlite:///{tmp_path}/m.db"
            )
            == []
        )

    @pytest.mark.postgres
    async def test_postgres(self) -> None:
        async with fresh_postgres_database("case_api_m") as url:
            assert await check_migrations(SERVICE_DIR, service_metadata("case_api"), url) == []
