"""The Alembic history matches the models on SQLite and PostgreSQL, and is revertable."""

from __future__ import annotations

from pathlib import Path

import payout_worker
import pytest
from aftersales_testing import check_migrations, fresh_postgres_database, service_metadata
from payout_worker import models  # noqa: F401  (registers the tables)

SERVICE_DIR = Path(payout_worker.__file__).parent  # alembic.ini and migrations/


class TestMigrations:
    async def test_sqlite(self, tmp_path: Path) -> None:
        assert (
            await check_migrations(
                SERVICE_DIR, service_metadata("payout_worker"), f"sqlite+aiosqlite:///{tmp_path}/m.db"
            )
            == []
        )

    @pytest.mark.postgres
    async def test_postgres(self) -> None:
        async with fresh_postgres_database("payout_worker_m") as url:
            assert await check_migrations(SERVICE_DIR, service_metadata("payout_worker"), url) == []
