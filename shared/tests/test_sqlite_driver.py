"""The SQLite adapter `make_engine` uses (aftersales_shared.sqlite_driver): one trip to aiosqlite's thread per
statement, and everything SQLAlchemy reads of a cursor as the stock adapter gives it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from aftersales_shared.db import make_engine
from aftersales_shared.sqlite_driver import OneTripDBAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call aiosqlite runs on its thread."""
    calls: list[Any] = []
    run = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await run(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def test_the_engine_uses_it(engine: AsyncEngine) -> None:
    assert isinstance(engine.dialect.dbapi, OneTripDBAPI)


async def test_one_trip_per_statement(engine: AsyncEngine, trips: list[Any]) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the connection's own trips (begin) done
        before = len(trips)
        assert (await conn.execute(text("SELECT 1, 2"))).all() == [(1, 2)]
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
        assert len(trips) - before == 3


async def test_what_sqlalchemy_reads_of_a_cursor(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert (inserted.lastrowid, inserted.rowcount) == (1, 1)
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
        changed = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 1"))
        assert changed.rowcount == 2
        returned = await conn.execute(text("UPDATE t SET name = 'z' WHERE id = 3 RETURNING id, name"))
        assert returned.all() == [(3, "z")]
        result = await conn.execute(text("SELECT id, name FROM t ORDER BY id"))
        assert list(result.keys()) == ["id", "name"]
        assert result.fetchmany(2) == [(1, "a"), (2, "b!")] and result.fetchall() == [(3, "z")]
        streamed = await conn.stream(text("SELECT name FROM t ORDER BY id"))
        assert [row.name async for row in streamed] == ["a", "b!", "z"]


async def test_errors_and_rollback_as_before(engine: AsyncEngine) -> None:
    async def insert(conn: AsyncConnection, name: str) -> None:
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), {"n": name})

    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await insert(conn, "a")
            await insert(conn, "a")
    with pytest.raises(OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0  # rolled back
