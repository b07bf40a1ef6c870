"""Gauges read from a service's database when Prometheus scrapes `/metrics`: the state of its work
(cases by status, open alerts by kind, payouts by status) and of its outbox. Counting at scrape time
keeps them right across restarts and replicas; each count is served by an index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import ColumnElement, func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .clock import as_utc
from .outbox import OutboxMessage

OUTBOX_BACKLOG = Gauge("outbox_backlog", "events committed but not yet published")
OUTBOX_OLDEST = Gauge(
    "outbox_oldest_unpublished_age_seconds", "age of the oldest unpublished event (0: none)"
)


@dataclass(frozen=True)
class CountBy:
    """A gauge with one label: the count of `column`'s table rows per value of `column`, among those
    matching `where`. Every value in `values` is reported, as 0 when no row has it, so that an alert
    rule can tell 'none' from 'not reported'."""

    gauge: Gauge
    column: Any
    values: Sequence[str] = ()
    where: Sequence[ColumnElement[bool]] = ()

    async def refresh(self, session: AsyncSession) -> None:
        query = select(self.column, func.count()).where(*self.where).group_by(self.column)
        counts = {str(value): n for value, n in (await session.exec(query)).all()}
        self.gauge.clear()
        for value in {*self.values, *counts}:
            self.gauge.labels(value).set(counts.get(value, 0))


async def refresh(
    sessions: async_sessionmaker[AsyncSession], gauges: Sequence[CountBy], now: datetime
) -> None:
    """Read every gauge (the outbox's and the service's) in one short read-only transaction."""
    async with sessions() as session:
        unsent = col(OutboxMessage.sent_at).is_(None)
        backlog, oldest = (
            await session.exec(select(func.count(), func.min(OutboxMessage.created_at)).where(unsent))
        ).one()
        OUTBOX_BACKLOG.set(backlog)
        OUTBOX_OLDEST.set(max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest else 0)
        for gauge in gauges:
            await gauge.refresh(session)
