"""The CloudEvents Kafka protocol binding, structured mode: every record the outbox relay publishes carries
`content-type: application/cloudevents+json`, on the real broker and on the embedded log alike, and a record
parked on the DLQ keeps it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aftersales_shared.bus import Bus
from aftersales_shared.clock import SystemClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.events import CloudEvent, envelope
from aftersales_shared.outbox import InboxEntry, OutboxMessage, OutboxRelay
from aftersales_shared.topics import dlq
from bus_testing import topic_names
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from test_bus import drain


class Payload(BaseModel):
    n: int


def queue(session: AsyncSession, topic: str, event_type: str, n: int) -> None:
    """An outbox row as the services' producers leave it."""
    at = datetime.now(UTC)
    event = envelope(source="/test", type=event_type, subject=None, data=Payload(n=n), at=at)
    session.add(
        OutboxMessage(event_id=event.id, topic=topic, key=f"k{n}", payload=event.to_bytes(), created_at=at)
    )


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    async with engine.begin() as conn:
        for table in (OutboxMessage, InboxEntry):
            await conn.run_sync(lambda c, t=table: t.__table__.create(c))  # type: ignore[attr-defined]
    yield session_factory(engine)
    await engine.dispose()


class TestStructuredMode:
    async def test_relayed_records_carry_the_cloudevents_content_type(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        async with unit_of_work(sessions) as session:
            for n in range(3):
                queue(session, topic, "test.happened.v1", n)
        assert await OutboxRelay(sessions, bus, SystemClock()).drain_once() == 3
        records = await drain(bus, "g-binding", topic, 3)
        assert len(records) == 3
        for record in records:
            assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
            assert CloudEvent.from_bytes(record.value).specversion == "1.0"  # the whole event is the value

    async def test_a_parked_record_keeps_the_header(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        async with unit_of_work(sessions) as session:
            queue(session, topic, "test.failing.v1", 1)
        await OutboxRelay(sessions, bus, SystemClock()).drain_once()

        async def fail(session: AsyncSession, event: CloudEvent) -> None:
            raise RuntimeError("no")

        runner = ConsumerRunner(
            bus=bus,
            sessions=sessions,
            clock=SystemClock(),
            group="g-parking",
            topics=[topic],
            handlers={"test.failing.v1": fail},
            max_attempts=1,
        )
        for record in await drain(bus, "g-parking", topic, 1):
            await runner.handle(record)
        parked = await drain(bus, "g-parked", dlq(topic), 1)
        assert dict(parked[0].headers)["content-type"] == b"application/cloudevents+json"
