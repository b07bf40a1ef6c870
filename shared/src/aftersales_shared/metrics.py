"""Gauges read from a service's database when Prometheus scrapes `/metrics`: the state of its work
(cases by status, open alerts by kind, payouts by status) and of its outbox. Counting at scrape time
keeps them right across restarts; every replica reports the same database-wide counts, so aggregate them
across instances with max(), not sum(). Each count is served by an index."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import ColumnElement, func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from .clock import as_utc
from .outbox import UNSENT, OutboxMessage

OUTBOX_BACKLOG = Gauge("aftersales_outbox_backlog", "events committed but not yet published", ["service"])
OUTBOX_OLDEST = Gauge(
    "aftersales_outbox_oldest_unpublished_age_seconds",
    "age of the oldest unpublished event (0: none)",
    ["service"],
)
READ_TIMEOUT = 5.0  # seconds; a scrape must not hang on a database that does not answer


@dataclass(frozen=True)
class CountBy:
    """A gauge with one label: the count of `column`'s table rows per value of `column`, among those
    matching `where`. Every value in `values` is reported, as 0 when no row has it, so that an alert
    rule can tell 'none' from 'not reported'."""

    gauge: Gauge
    column: Any
    values: Sequence[str] = ()
    where: Sequence[ColumnElement[bool]] = ()

    async def counts(self, session: AsyncSession) -> dict[str, int]:
        query = select(self.column, func.count()).where(*self.where).group_by(self.column)
        found = {str(value): n for value, n in (await session.exec(query)).all()}
        return {**dict.fromkeys(self.values, 0), **found}

    async def refresh(self, session: AsyncSession) -> None:
        counts = await self.counts(session)
        self.gauge.clear()
        for value, n in counts.items():
            self.gauge.labels(value).set(n)


async def refresh(
    sessions: async_sessionmaker[AsyncSession], service: str, gauges: Sequence[CountBy], now: datetime
) -> None:
    """Read every gauge (the outbox's and the service's) in one short transaction. If the database does
    not answer, they are all left out of the scrape (rather than served stale) and the error is raised."""
    try:
        async with asyncio.timeout(READ_TIMEOUT), sessions() as session:
            backlog, oldest = (
                await session.exec(select(func.count(), func.min(OutboxMessage.created_at)).where(UNSENT))
            ).one()
            OUTBOX_BACKLOG.labels(service).set(backlog)
            OUTBOX_OLDEST.labels(service).set(
                max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest else 0
            )
            for gauge in gauges:
                await gauge.refresh(session)
    except BaseException:
        for metric in (OUTBOX_BACKLOG, OUTBOX_OLDEST, *(g.gauge for g in gauges)):
            metric.clear()
        raise
