"""Retention of the outbox and the inbox, which would otherwise grow forever.

A published outbox row is needed no longer than its event is kept in Kafka. An inbox entry is needed no
longer than its event could be delivered again: a redelivery, a replay from the DLQ, or a restored outbox
republishing it. Both are deleted once older than EVENT_RETENTION_DAYS (14 by default, twice Kafka's
default retention). Unpublished rows are never deleted. Every replica may purge: deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .db import unit_of_work
from .outbox import InboxEntry, OutboxMessage

log = logging.getLogger(__name__)
INTERVAL = timedelta(hours=1)


async def purge(
    sessions: async_sessionmaker[AsyncSession], before: datetime, batch: int = 10_000
) -> tuple[int, int]:
    """Delete published outbox rows and inbox entries older than `before`, `batch` rows per transaction
    (short locks, bounded WAL); (outbox rows, inbox entries) deleted."""
    outbox = select(OutboxMessage.id).where(col(OutboxMessage.sent_at) < before).limit(batch)
    inbox_key = tuple_(col(InboxEntry.consumer_group), col(InboxEntry.event_id))
    inbox = (
        select(InboxEntry.consumer_group, InboxEntry.event_id)
        .where(col(InboxEntry.processed_at) < before)
        .limit(batch)
    )
    totals = []
    for statement in (
        delete(OutboxMessage).where(col(OutboxMessage.id).in_(outbox)),
        delete(InboxEntry).where(inbox_key.in_(inbox)),
    ):
        total = 0
        while True:
            async with unit_of_work(sessions) as session:
                deleted = (await session.exec(statement)).rowcount
            total += deleted
            if deleted < batch:
                break
        totals.append(total)
    return totals[0], totals[1]


def retention_job(app: FastAPI, days: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def purge_old_events() -> None:
        while True:
            try:
                before = app.state.clock.now() - timedelta(days=days)
                outbox, inbox = await purge(app.state.sessions, before)
                if outbox or inbox:
                    log.info("purged %d published outbox rows and %d inbox entries", outbox, inbox)
            except Exception:
                log.exception("outbox and inbox purge failed; retrying next interval")
            await asyncio.sleep(INTERVAL.total_seconds())

    return purge_old_events
