"""Engines and sessions for SQLite (WAL, embedded mode) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Insert, Table, any_, bindparam, event, insert, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.orm.session import Session

from . import sqlite_driver


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # Statement parameters hold buyer data (phones, addresses, payee accounts): never in an error's text,
    # so never in a log line.
    kwargs.setdefault("hide_parameters", True)
    if not is_sqlite(url):
        # Enough connections for the requests in flight; connections that died are replaced when
        # used (asyncpg raises, the pool discards) rather than pinged before every checkout.
        kwargs.setdefault("pool_size", 32)
        kwargs.setdefault("max_overflow", 8)
        kwargs.setdefault("pool_recycle", 1800)
        return create_async_engine(url, **kwargs)
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_driver_name() == "aiosqlite":
        kwargs.setdefault("module", sqlite_driver.dbapi())  # one trip to aiosqlite's thread a statement
    # One connection: SQLite has a single writer, and queueing in the pool is cheaper and
    # kinder than "database is locked" errors between our own requests.
    engine = create_async_engine(url, pool_size=1, max_overflow=0, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # A Session subclass of its own, so that listeners (the outbox relay's wake-up) see only this app.
    sync_class = type("AppSession", (Session,), {})
    return async_sessionmaker(
        engine, class_=AsyncSession, expire_on_commit=False, sync_session_class=sync_class
    )


def log_on_commit(
    session: AsyncSession,
    logger: logging.Logger,
    message: str,
    *args: Any,
    level: int = logging.INFO,
    **ids: Any,
) -> None:
    """A line about a change (INFO unless `level` says), written once its transaction commits: a change
    rolled back (a conflict, a batch retried one by one) is not logged, nor logged twice."""
    session.info.setdefault(_PENDING_LOGS, []).append((logger, level, message, args, ids))


_PENDING_LOGS = "pending_logs"


@event.listens_for(Session, "after_commit")
def _write_pending_logs(session: Session) -> None:
    for logger, level, message, args, ids in session.info.pop(_PENDING_LOGS, ()):
        logger.log(level, message, *args, extra=ids)


@event.listens_for(Session, "after_rollback")
def _drop_pending_logs(session: Session) -> None:
    session.info.pop(_PENDING_LOGS, None)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Commit once at the edge, roll back on any error."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def insert_rows(session: AsyncSession, *rows: SQLModel) -> None:
    """INSERT new rows now, in the session's transaction, without the ORM tracking them: on PostgreSQL in
    one statement (one round trip: each row an INSERT, joined as data-modifying CTEs), elsewhere an
    INSERT per table. Name a row before the rows that refer to it. An autoincrement key left unset is left
    to the database."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        tables: dict[Table, list[dict[str, Any]]] = {}
        for row in rows:
            tables.setdefault(_table(row), []).append(_values(row))
        for table, values in tables.items():
            await connection.execute(insert(table), values)
        return
    values = [_values(row) for row in rows]
    statement = _one_statement(tuple((_table(row), tuple(v)) for row, v in zip(rows, values, strict=True)))
    await connection.execute(
        statement, {f"r{i}_{key}": value for i, v in enumerate(values) for key, value in v.items()}
    )


@functools.lru_cache(maxsize=128)
def _one_statement(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    """The one statement of rows of this shape (their tables and columns, in order), with named parameters:
    built once, compiled once."""
    inserts = [
        insert(table).values({key: bindparam(f"r{i}_{key}", type_=table.c[key].type) for key in keys})
        for i, (table, keys) in enumerate(shape)
    ]
    *first, last = inserts
    return last.add_cte(*(earlier.cte(f"row_{i}") for i, earlier in enumerate(first)))


def _table(row: SQLModel) -> Table:
    return row.__table__  # type: ignore[attr-defined]


def _values(row: SQLModel) -> dict[str, Any]:
    """The row's columns, but an autoincrement key it leaves to the database."""
    return {
        c.key: getattr(row, c.key)
        for c in _table(row).columns
        if not (c.autoincrement is True and getattr(row, c.key) is None)
    }


async def insert_many(session: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT rows that all have the same keys, in the session's transaction. On PostgreSQL one statement
    that takes whole columns as arrays (`unnest`): thousands of rows (a scan's alerts and their events, a
    batch of payouts) cost SQLAlchemy and the driver no per-row work. Elsewhere an executemany."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await connection.execute(insert(table), list(rows))
        return
    names = ", ".join(rows[0])
    source, arrays = unnest(connection.dialect, table, rows, list(rows[0]))
    # In the rows' order: an autoincrement key (the outbox's, which the relay publishes by) follows it.
    statement = text(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {source} ORDER BY u.ordinality")
    await connection.execute(statement, arrays)


async def update_many(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    columns: Sequence[str],
    **alike: Any,
) -> None:
    """UPDATE `columns` of the rows of `table` found by `key`, each to its row's value, and the columns
    `alike` to one value for all. On PostgreSQL one statement over arrays (`unnest`); elsewhere an
    executemany."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        by_key = (
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({**{c: bindparam(f"_{c}") for c in columns}, **alike})
        )
        await connection.execute(by_key, [{"_key": r[key], **{f"_{c}": r[c] for c in columns}} for r in rows])
        return
    source, arrays = unnest(connection.dialect, table, rows, [key, *columns])
    sets = [*(f"{c} = u.{c}" for c in columns), *(f"{c} = :alike_{c}" for c in alike)]
    statement = text(
        f"UPDATE {table.name} SET {', '.join(sets)} FROM {source} WHERE {table.name}.{key} = u.{key}"
    ).bindparams(*(bindparam(f"alike_{c}", type_=table.c[c].type) for c in alike))
    await connection.execute(statement, {**arrays, **{f"alike_{c}": v for c, v in alike.items()}})


def one_of(session: AsyncSession, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`, for a list of ids that can run to thousands (a batch of payouts). On PostgreSQL
    `column = ANY(:array)`: one parameter, so the same statement (and the server's plan of it) whatever the
    number of values, where an IN list binds a parameter per value and is planned again for each length."""
    values = list(values)
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(bindparam(None, values, type_=ARRAY(column.type)))


def unnest(
    dialect: Dialect, table: Table, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[str, dict[str, list[Any]]]:
    """`unnest(...) WITH ORDINALITY AS u(..., ordinality)` over `columns` of `table` (PostgreSQL: the rows,
    and each one's position from 1) with one array parameter per column, and the arrays: each value as the
    column's type binds it (a money column's cents, an instant's check that it is aware); the casts type
    the arrays."""
    arrays: dict[str, list[Any]] = {}
    for name in columns:
        bind = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)  # as this driver binds it
        values = [row[name] for row in rows]
        arrays[name] = values if bind is None else [bind(v) for v in values]
    casts = ", ".join(f"CAST(:{c} AS {_element_type(table, c, dialect)}[])" for c in columns)
    return f"unnest({casts}) WITH ORDINALITY AS u({', '.join(columns)}, ordinality)", arrays


def _element_type(table: Table, column: str, dialect: Dialect) -> str:
    """The column's type, but VARCHAR(n) as VARCHAR: a cast to VARCHAR(n) would cut a longer text short
    without a word, where the INSERT or UPDATE into the column refuses it."""
    name = table.c[column].type.compile(dialect=dialect)
    return "VARCHAR" if name.startswith("VARCHAR(") else name
