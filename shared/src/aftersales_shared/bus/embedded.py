"""The embedded durable event log: one SQLite file (WAL) shared by the services on a machine.

Same contract as Kafka: records are appended durably, consumer groups store the next offset
explicitly, delivery is at least once. One partition per topic; one active consumer per group.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .base import Headers, OutRecord, Record

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT,
    value BLOB NOT NULL,
    headers TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS records_topic_id ON records (topic, id);
CREATE TABLE IF NOT EXISTS positions (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic)
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    return conn


def _encode_headers(headers: Headers) -> str:
    return json.dumps([[k, v.decode("latin-1")] for k, v in headers])


class EmbeddedBus:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        # A thread lock, not an asyncio one: a cancelled caller stops waiting, but its thread goes on
        # using the connection, and closing it under that thread would crash the process.
        self._lock = threading.Lock()
        self._stopped = False

    async def start(self) -> None:
        if self._conn is None:
            self._stopped = False
            self._conn = await asyncio.to_thread(_connect, self.path)

    async def stop(self) -> None:
        def close() -> None:
            with self._lock:
                self._stopped = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)

    async def healthy(self) -> bool:
        if self._conn is None:
            return False
        await self.run(lambda db: db.execute("SELECT 1").fetchone())
        return True

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the log's connection in a thread, one piece of work at a time."""
        if not self._stopped:
            await self.start()

        def locked() -> T:
            with self._lock:
                if self._conn is None:
                    raise RuntimeError("the event log is closed")
                return work(self._conn)

        return await asyncio.to_thread(locked)

    async def publish(self, topic: str, key: str | None, value: bytes, headers: Headers = ()) -> None:
        await self.publish_batch([OutRecord(topic, key, value, tuple(headers))])

    async def publish_batch(self, records: Sequence[OutRecord]) -> None:
        rows = [(r.topic, r.key, r.value, _encode_headers(r.headers)) for r in records]

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO records (topic, key, value, headers) VALUES (?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self.run(write)

    async def consumer(self, group: str, topics: Sequence[str]) -> EmbeddedConsumer:
        await self.start()
        return EmbeddedConsumer(self, group, list(topics))


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, group: str, topics: list[str]) -> None:
        self._bus = bus
        self._group = group
        self._topics = topics
        self._next: dict[str, int] | None = None

    async def _positions(self) -> dict[str, int]:
        if self._next is None:
            rows = await self._bus.run(
                lambda db: db.execute(
                    "SELECT topic, next_offset FROM positions WHERE group_id = ?", (self._group,)
                ).fetchall()
            )
            stored = dict(rows)
            self._next = {t: stored.get(t, 0) for t in self._topics}
        return self._next

    async def fetch(self, max_records: int = 500, timeout_ms: int = 500) -> list[Record]:
        positions = await self._positions()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            records = await self._bus.run(lambda db: self._read(db, positions, max_records))
            if records or loop.time() >= deadline:
                return records
            await asyncio.sleep(0.02)

    @staticmethod
    def _read(db: sqlite3.Connection, positions: dict[str, int], max_records: int) -> list[Record]:
        out: list[Record] = []
        for topic, start in positions.items():
            rows = db.execute(
                "SELECT id, key, value, headers FROM records WHERE topic = ? AND id >= ? ORDER BY id LIMIT ?",
                (topic, start, max_records - len(out)),
            ).fetchall()
            for rid, key, value, headers in rows:
                out.append(
                    Record(
                        topic,
                        0,
                        rid,
                        key,
                        bytes(value),
                        tuple((k, v.encode("latin-1")) for k, v in json.loads(headers)),
                    )
                )
            if rows:
                positions[topic] = rows[-1][0] + 1
            if len(out) >= max_records:
                break
        return out

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        (await self._positions())[topic] = offset

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        rows = [(self._group, topic, offset) for (topic, _), offset in positions.items()]
        await self._bus.run(
            lambda db: db.executemany(
                "INSERT INTO positions (group_id, topic, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id, topic) DO UPDATE SET next_offset = excluded.next_offset",
                rows,
            )
        )

    async def lag(self) -> dict[tuple[str, int], int]:
        positions = await self._positions()

        def unread(db: sqlite3.Connection) -> dict[tuple[str, int], int]:
            # Offsets are ids of the one records table, so a topic's are not contiguous: count them.
            count = "SELECT COUNT(*) FROM records WHERE topic = ? AND id >= ?"
            return {(t, 0): db.execute(count, (t, start)).fetchone()[0] for t, start in positions.items()}

        return await self._bus.run(unread)

    async def close(self) -> None:
        return None
