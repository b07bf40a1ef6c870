"""The outbox and inbox purge: old published rows and old inbox entries go, everything else stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aftersales_shared.db import unit_of_work
from aftersales_shared.outbox import InboxEntry, OutboxMessage
from aftersales_shared.retention import purge
from aftersales_testing import tables_on
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with tables_on(
        request.param, tmp_path, "retention", [OutboxMessage.__table__, InboxEntry.__table__]
    ) as sessions:  # type: ignore[attr-defined]
        yield sessions


async def test_old_published_rows_and_old_inbox_entries_go_in_batches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with unit_of_work(sessions) as session:
        for n in range(25):  # sent 20 days ago, except the last five: never sent
            sent = None if n >= 20 else NOW - 20 * DAY
            session.add(
                OutboxMessage(
                    event_id=f"old-{n}",
                    topic="t",
                    key="k",
                    payload=b"{}",
                    created_at=NOW - 20 * DAY,
                    sent_at=sent,
                )
            )
        session.add(
            OutboxMessage(event_id="recent", topic="t", key="k", payload=b"{}", created_at=NOW, sent_at=NOW)
        )
        for n in range(12):
            session.add(InboxEntry(consumer_group="g", event_id=f"old-{n}", processed_at=NOW - 15 * DAY))
        session.add(InboxEntry(consumer_group="g", event_id="recent", processed_at=NOW - 13 * DAY))

    assert await purge(sessions, NOW - 14 * DAY, batch=7) == (20, 12)
    assert await purge(sessions, NOW - 14 * DAY, batch=7) == (0, 0)
    async with sessions() as session:
        kept = (await session.exec(select(OutboxMessage.event_id).order_by(col(OutboxMessage.id)))).all()
        inbox = (await session.exec(select(InboxEntry.event_id))).all()
    assert kept == [*(f"old-{n}" for n in range(20, 25)), "recent"]  # unsent rows are never purged
    assert inbox == ["recent"]
