"""The transactional outbox and the inbox: events leave with the state change that caused them,
and a redelivered event has no second effect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    Table,
    bindparam,
    event,
    func,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .background import BackgroundLoop
from .bus import Bus, OutRecord
from .clock import Clock
from .contracts import Contract
from .db import insert_many
from .events import KAFKA_HEADERS, CloudEvent, envelope_bytes
from .ids import new_id

log = logging.getLogger(__name__)
RELAY_LOCK_ID = 0x0A5_0B0C  # the PostgreSQL advisory lock that elects the publishing relay


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    # BigInteger on PostgreSQL, INTEGER (rowid, autoincrement) on SQLite.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(unique=True)
    topic: str
    key: str | None
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime
    sent_at: datetime | None = Field(default=None, index=True)


UNSENT = col(OutboxMessage.sent_at).is_(None)
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]


class InboxEntry(SQLModel, table=True):
    __tablename__ = "inbox"

    consumer_group: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    processed_at: datetime = Field(index=True)  # for the retention purge


INBOX: Table = InboxEntry.__table__  # type: ignore[attr-defined]


def add_event(
    session: AsyncSession,
    contract: Contract,
    data: BaseModel,
    *,
    source: str,
    subject: str | None,
    at: datetime,
) -> str:
    """Queue an event of a registered contract in the caller's transaction; it is published only if that
    commits. Topic, key and type are the contract's."""
    row = outbox_row(session, contract, data, source=source, subject=subject, at=at)
    session.add(row)
    return row.event_id


def outbox_row(
    session: AsyncSession,
    contract: Contract,
    data: BaseModel,
    *,
    source: str,
    subject: str | None,
    at: datetime,
) -> OutboxMessage:
    """`add_event`'s row, for a caller that writes it with its other rows (`db.insert_rows`) in the
    session's transaction; the relay is woken when that commits."""
    session.info["outbox_dirty"] = True
    return OutboxMessage(**_row(contract, subject, data, source=source, at=at))


def _row(
    contract: Contract, subject: str | None, data: BaseModel | dict[str, Any], *, source: str, at: datetime
) -> dict[str, Any]:
    """An outbox row's columns. The payload is our own, validated as it was made: serialised once, not
    validated again as an envelope."""
    event_id = new_id("evt")
    return {
        "event_id": event_id,
        "topic": contract.topic,
        "key": str(data[contract.key]) if isinstance(data, dict) else contract.key_of(data),
        "payload": envelope_bytes(
            id=event_id, source=source, type=contract.type, subject=subject, data=data, at=at
        ),
        "created_at": at,
    }


# One event to queue: (its contract, subject, payload). The payload is the contract's model, or, from a
# producer that queues thousands at once from its own typed rows, that model's fields in its order.
Outgoing = tuple[Contract, str | None, BaseModel | dict[str, Any]]


async def add_events(session: AsyncSession, *, source: str, events: Sequence[Outgoing], at: datetime) -> None:
    """`add_event` in bulk: one INSERT for many events (a batch of results, a scan's alerts)."""
    if not events:
        return
    rows = [_row(contract, subject, data, source=source, at=at) for contract, subject, data in events]
    await insert_many(session, OUTBOX, rows)  # tens of thousands at once: a detection run's alerts
    session.info["outbox_dirty"] = True


async def already_processed(session: AsyncSession, group: str, event_id: str, at: datetime) -> bool:
    """Record `event_id` for `group` in this transaction; True if it was recorded before.

    One round trip (insert, nothing on conflict): a concurrent delivery of the same event waits for the
    first one's transaction, then finds it recorded."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        if await session.get(InboxEntry, (group, event_id)) is not None:
            return True
        session.add(InboxEntry(consumer_group=group, event_id=event_id, processed_at=at))
        return False
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    recorded = await session.exec(
        insert(InboxEntry)
        .values(consumer_group=group, event_id=event_id, processed_at=at)
        .on_conflict_do_nothing()
        .returning(col(InboxEntry.event_id))
    )
    return recorded.first() is None


async def unseen(
    session: AsyncSession, group: str, events: Sequence[CloudEvent], at: datetime
) -> list[CloudEvent]:
    """Record a chunk of events for `group` in this transaction; return those not recorded before, in
    order, each once (its first delivery: a later one under the same id cannot stand in for it). One
    statement (insert, nothing on conflict): a concurrent delivery of one of them waits for the other
    transaction, then finds it recorded."""
    first: dict[str, CloudEvent] = {}
    for delivered in events:
        first.setdefault(delivered.id, delivered)
    distinct = list(first.values())
    if not distinct:
        return []
    connection = await session.connection()
    ids = [e.id for e in distinct]
    if connection.dialect.name == "postgresql":
        record = text(
            "INSERT INTO inbox (consumer_group, event_id, processed_at) "
            "SELECT CAST(:group AS text), unnest(CAST(:ids AS text[])), :at "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        ).bindparams(bindparam("at", type_=INBOX.c.processed_at.type))
        recorded = await connection.execute(record, {"group": group, "ids": ids, "at": at})
    else:
        recorded = await connection.execute(
            sqlite.insert(INBOX).on_conflict_do_nothing().returning(INBOX.c.event_id),
            [{"consumer_group": group, "event_id": i, "processed_at": at} for i in ids],
        )
    fresh = set(recorded.scalars())
    return [e for e in distinct if e.id in fresh]


class OutboxRelay(BackgroundLoop):
    """Publishes committed outbox rows in id order (so in order per key) and marks them sent.

    Wakes when a session that added events commits (then lingers `linger` seconds, so that the commits of
    a busy moment leave in one batch rather than one drain each), and polls every `poll_interval`
    regardless. While the bus is down it backs off; rows wait in the table and nothing is lost.
    """

    task_name = "outbox-relay"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        clock: Clock,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.1,
        linger: float = 0.02,
        max_backoff: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._linger = linger
        self._max_backoff = max_backoff
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        self._wake = asyncio.Event()
        self.published = 0

    def watch(self) -> None:
        """Wake the relay after every commit of one of our sessions that queued events."""

        @event.listens_for(self._sessions.kw["sync_session_class"], "after_commit")
        def _after_commit(session: object) -> None:
            info = getattr(session, "info", {})
            if info.pop("outbox_dirty", False):
                self._wake.set()

    async def backlog(self) -> int:
        async with self._sessions() as session:
            count = await session.exec(select(func.count()).select_from(OutboxMessage).where(UNSENT))
            return int(count.one())

    async def drain_once(self) -> int:
        """Publish one batch; return how many rows it sent."""
        return (await self._drain(after=None))[0]

    async def _drain(self, after: int | None) -> tuple[int, int | None]:
        """Publish the oldest unsent rows (with an id above `after`, if given); (rows sent, last id)."""
        async with self._sessions() as session:
            if self._postgres:
                # One relay at a time across replicas, so batches leave in id order.
                locked = await session.exec(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_ID)))
                if not locked.one():
                    return 0, None
            # Plain columns, not ORM objects; and within one drain, keyset from the last batch, so that a
            # backlog is not rescanned from the sent rows before it (kept for EVENT_RETENTION_DAYS).
            query = select(
                OutboxMessage.id, OutboxMessage.topic, OutboxMessage.key, OutboxMessage.payload
            ).where(UNSENT)
            if after is not None:
                query = query.where(col(OutboxMessage.id) > after)
            rows = (await session.exec(query.order_by(col(OutboxMessage.id)).limit(self._batch_size))).all()
            if not rows:
                return 0, None
            await self._bus.publish_batch(
                [OutRecord(topic, key, payload, KAFKA_HEADERS) for _, topic, key, payload in rows]
            )
            await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.id).in_([r[0] for r in rows]))
                .values(sent_at=self._clock.now())
            )
            await session.commit()
            self.published += len(rows)
            return len(rows), rows[-1][0]

    async def run(self) -> None:
        backoff = self._poll_interval
        while True:
            try:
                # A full batch: more is waiting, continue after it. A short one ends this drain; the
                # next starts from the first unsent row again, so a row committed late with a lower id
                # (a transaction that took its id before ours and committed after) is not missed.
                sent, after = await self._drain(after=None)
                while sent == self._batch_size:
                    sent, after = await self._drain(after)
                backoff = self._poll_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox relay cannot publish; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
                await asyncio.sleep(self._linger)
