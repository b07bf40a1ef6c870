"""Engines and sessions for SQLite (WAL, embedded mode) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.orm.session import Session


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
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
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
    session: AsyncSession, logger: logging.Logger, message: str, *args: Any, **ids: Any
) -> None:
    """An INFO line about a change, written once its transaction commits: a change rolled back (a
    conflict, a batch retried one by one) is not logged, nor logged twice."""
    session.info.setdefault(_PENDING_LOGS, []).append((logger, message, args, ids))


_PENDING_LOGS = "pending_logs"


@event.listens_for(Session, "after_commit")
def _write_pending_logs(session: Session) -> None:
    for logger, message, args, ids in session.info.pop(_PENDING_LOGS, ()):
        logger.info(message, *args, extra=ids)


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
