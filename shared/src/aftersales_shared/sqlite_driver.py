"""SQLite through aiosqlite, one trip to its thread per statement: what `make_engine` uses for SQLite.

aiosqlite runs each call on a thread of its own. SQLAlchemy's adapter makes three or four such calls for a
statement (open a cursor, execute, fetch the rows, close the cursor), and each is a wake-up of that thread,
a wake-up of the event loop and two handoffs of the GIL. Measured here: `SELECT 1` costs ~250 µs of CPU
that way, against ~45 µs through SQLAlchemy's synchronous pysqlite. The embedded default runs about
fourteen statements per case opened (P6), so these trips were a large part of its CPU per request.

`OneTripCursor` does the four in one function on aiosqlite's thread and keeps the answer (description,
rowcount, lastrowid, rows) for SQLAlchemy to read. Everything else (connections, transactions, errors) is
SQLAlchemy's aiosqlite dialect unchanged; the engine takes this adapter as its DBAPI module (`module=`).
It relies on two internals, both exercised by every test that runs on SQLite: SQLAlchemy's adapter
classes, and aiosqlite's `Connection._execute` (run a function on the connection's thread, in order with
its other calls).
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

Answer = tuple[Any, int, int | None, list[Any]]  # description, rowcount, lastrowid, rows


def _run(db: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> Answer:
    """On aiosqlite's thread: the statement, and all SQLAlchemy will ask of its cursor."""
    cursor = db.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that holds a statement's answer, not an aiosqlite cursor: nothing stays open on the thread
    between statements, so there is nothing to close there either."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:  # no trip: no cursor
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows: collections.deque[Any] = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._one_trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._one_trip(operation, seq_of_parameters, many=True)

    async def _one_trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            answer: Answer = await connection._execute(_run, connection._conn, operation, parameters, many)
        self._description, self._rowcount, self._lastrowid, rows = answer
        self._rows = collections.deque(rows)

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI adapter, whose connections make `OneTripCursor`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        return OneTripConnection(self, super().connect(*arg, **kw)._connection)


def dbapi() -> OneTripDBAPI:
    return OneTripDBAPI(aiosqlite, sqlite3)
