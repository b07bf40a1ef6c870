"""The consumer runner applies a fetch's partitions concurrently (on PostgreSQL): each partition's events in
offset order, offsets committed only once the transactions holding their effects have committed, and the
inbox (one INSERT ... ON CONFLICT per chunk) giving each event one effect, also against a concurrent
delivery of the same event."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.bus import Bus, Consumer, OutRecord, Record
from aftersales_shared.clock import SystemClock
from aftersales_shared.consumer import BatchHandler, ConsumerRunner, Handler
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.events import CloudEvent
from aftersales_shared.outbox import InboxEntry, unseen
from aftersales_shared.topics import dlq as dlq_of
from aftersales_testing import fresh_postgres_database
from bus_testing import topic_names
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TYPE = "test.happened.v1"
metadata = MetaData()
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False),
    Column("key", String, nullable=False),
    Column("n", Integer, nullable=False),
)


async def _sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=[InboxEntry.__table__]))  # type: ignore[attr-defined]
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def pg_sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with fresh_postgres_database("consumer") as url:
        async for sessions in _sessions(url):
            yield sessions


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        async for s in _sessions(f"sqlite+aiosqlite:///{tmp_path}/c.db"):
            yield s
        return
    async with fresh_postgres_database("consumer") as url:
        async for s in _sessions(url):
            yield s


def event(key: str, n: int, event_id: str | None = None) -> CloudEvent:
    return CloudEvent(
        id=event_id or f"evt-{key}-{n}", source="/test", type=TYPE, subject=key, time=NOW, data={"n": n}
    )


class Watched:
    """The bus's consumer, with a check at every commit: the event of each record below the offset committed
    for its partition has its effect committed already (read in a transaction of its own)."""

    def __init__(self, consumer: Consumer, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._consumer = consumer
        self._sessions = sessions
        self.fetched: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
        self.commits: list[dict[tuple[str, int], int]] = []
        self.early: list[str] = []

    async def fetch(self, max_records: int = 500, timeout_ms: int = 500) -> Any:
        records = await self._consumer.fetch(max_records=max_records, timeout_ms=timeout_ms)
        for r in records:
            self.fetched[(r.topic, r.partition)].append((r.offset, CloudEvent.from_bytes(r.value).id))
        return records

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        async with self._sessions() as session:
            done = set((await session.exec(select(effects.c.event_id))).scalars())  # type: ignore[call-overload]
        for (topic, partition), upto in positions.items():
            missing = [o for o, e in self.fetched[(topic, partition)] if o < upto and e not in done]
            if missing:
                self.early.append(f"{topic}/{partition}: offsets {missing[:5]} committed before their effect")
        self.commits.append(positions)
        await self._consumer.commit(positions)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


class WatchedBus:
    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._bus = bus
        self._sessions = sessions
        self.watched: Watched | None = None

    async def consumer(self, group: str, topics: list[str]) -> Watched:
        self.watched = Watched(await self._bus.consumer(group, topics), self._sessions)
        return self.watched

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@pytest.mark.postgres
class TestConcurrentPartitions:
    async def test_each_partition_in_offset_order_and_offsets_after_the_effects(
        self, bus: Bus, pg_sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        keys = [f"k{i}" for i in range(12)]  # on Kafka, over the topic's 3 partitions
        per_key = 40
        records = [OutRecord(topic, k, event(k, n).to_bytes()) for n in range(per_key) for k in keys]
        records.insert(50, records[10])  # a redelivery: one effect all the same
        await bus.publish_batch(records)
        running, overlap = 0, 0

        async def apply(session: AsyncSession, events: list[CloudEvent]) -> None:
            nonlocal running, overlap
            running += 1
            overlap = max(overlap, running)
            try:
                await asyncio.sleep(0.02)  # holds its transaction open while other partitions go on
                rows = [{"event_id": e.id, "key": e.subject, "n": e.data["n"]} for e in events]
                await session.exec(insert(effects), params=rows)  # type: ignore[call-overload]
            finally:
                running -= 1

        watched = WatchedBus(bus, pg_sessions)
        runner = ConsumerRunner(
            bus=watched,  # type: ignore[arg-type]
            sessions=pg_sessions,
            clock=SystemClock(),
            group="g-lanes",
            topics=[topic],
            handlers={},
            batch_handlers={TYPE: apply},
            fetch_max=100,
        )
        runner.start()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while runner.processed < len(keys) * per_key and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            await runner.stop()

        async with pg_sessions() as session:
            rows = (await session.exec(select(effects.c.key, effects.c.n).order_by(effects.c.id))).all()  # type: ignore[call-overload]
        assert len(rows) == len(keys) * per_key  # every event once, the redelivered one too
        by_key: dict[str, list[int]] = defaultdict(list)
        for key, n in rows:
            by_key[key].append(n)
        assert all(ns == list(range(per_key)) for ns in by_key.values())  # each key in its order
        assert watched.watched is not None
        assert watched.watched.commits and not watched.watched.early
        if len(watched.watched.fetched) > 1:  # Kafka: several partitions in one fetch were applied at once
            assert overlap > 1


class TestInbox:
    async def test_a_chunk_records_each_event_once_and_keeps_the_order(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        first = [event("a", 1), event("a", 2), event("a", 1), event("a", 3)]
        async with unit_of_work(sessions) as session:
            fresh = await unseen(session, "g", first, NOW)
        assert [e.id for e in fresh] == ["evt-a-1", "evt-a-2", "evt-a-3"]
        async with unit_of_work(sessions) as session:
            again = await unseen(session, "g", [event("a", 3), event("a", 4), event("a", 2)], NOW)
            other_group = await unseen(session, "h", [event("a", 3)], NOW)
        assert [e.id for e in again] == ["evt-a-4"]
        assert [e.id for e in other_group] == ["evt-a-3"]
        async with sessions() as session:
            count = (await session.exec(select(func.count()).select_from(InboxEntry))).one()  # type: ignore[call-overload]
        assert count[0] == 5

    async def test_a_rolled_back_chunk_records_nothing(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(RuntimeError):
            async with unit_of_work(sessions) as session:
                assert len(await unseen(session, "g", [event("a", 1)], NOW)) == 1
                raise RuntimeError("the handler failed")
        async with unit_of_work(sessions) as session:
            assert len(await unseen(session, "g", [event("a", 1)], NOW)) == 1

    @pytest.mark.postgres
    async def test_a_concurrent_delivery_waits_and_then_finds_the_event_recorded(
        self, pg_sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        async with pg_sessions() as first:
            assert len(await unseen(first, "g", [event("a", 1), event("a", 2)], NOW)) == 2
            async with pg_sessions() as second:
                other = asyncio.create_task(unseen(second, "g", [event("a", 2), event("a", 3)], NOW))
                await asyncio.sleep(0.3)
                assert not other.done()  # waits on the first transaction's row
                await first.commit()
                assert [e.id for e in await other] == ["evt-a-3"]
                await second.commit()


class TestLockFirst:
    async def test_each_transaction_takes_its_locks_before_its_events_are_handled(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """`lock_first` sees the events a transaction applies (not those seen before), before any handler;
        a chunk that failed is handled again one event at a time, each transaction taking its own locks."""
        calls: list[tuple[str, list[int]]] = []
        failed: set[int] = set()

        async def lock_first(session: AsyncSession, events: list[CloudEvent]) -> None:
            calls.append(("lock", [e.data["n"] for e in events]))

        async def handle(session: AsyncSession, e: CloudEvent) -> None:
            calls.append(("handle", [e.data["n"]]))
            if e.data["n"] == 3 and 3 not in failed:
                failed.add(3)
                raise RuntimeError("fails once")

        runner = ConsumerRunner(
            bus=None,  # type: ignore[arg-type]  # nothing is dead-lettered here
            sessions=sessions,
            clock=SystemClock(),
            group="g",
            topics=["t"],
            handlers={TYPE: handle},
            lock_first=lock_first,
            backoff=0,
        )

        def chunk(*ns: int) -> list[Record]:
            return [Record("t", 0, n, "a", event("a", n).to_bytes()) for n in ns]

        async with unit_of_work(sessions) as session:
            await unseen(session, "g", [event("a", 1)], NOW)
        await runner.handle_chunk(chunk(1))
        await runner.handle_chunk(chunk(1, 2))
        await runner.handle_chunk(chunk(3, 4))
        assert calls == [
            ("lock", [2]),
            ("handle", [2]),
            ("lock", [3, 4]),
            ("handle", [3]),
            ("lock", [3]),
            ("handle", [3]),
            ("lock", [4]),
            ("handle", [4]),
        ]


def runner_of(
    bus: Bus,
    sessions: async_sessionmaker[AsyncSession],
    topics: Sequence[str] = ("t",),
    handlers: Mapping[str, Handler] | None = None,
    batch_handlers: Mapping[str, BatchHandler] | None = None,
) -> ConsumerRunner:
    """A runner of group "g" with these handlers."""
    return ConsumerRunner(
        bus=bus,
        sessions=sessions,
        clock=SystemClock(),
        group="g",
        topics=topics,
        handlers=handlers or {},
        batch_handlers=batch_handlers,
    )


class TestRefused:
    async def test_refused_events_are_parked_at_once_and_the_rest_applied_as_a_chunk(
        self, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """A batch handler refuses two forgeries of a chunk (`Refused`): they are parked, each with its
        reason and without a retry, and the other events go through the handler again in one transaction,
        each applied once; an inbox row is kept for none of the refused."""
        from aftersales_shared.bus.embedded import EmbeddedBus
        from aftersales_shared.consumer import Refused

        bus = EmbeddedBus(tmp_path / "events.db")
        await bus.start()
        calls: list[list[int]] = []

        async def apply(session: AsyncSession, events: list[CloudEvent]) -> None:
            calls.append([e.data["n"] for e in events])
            forged = {e.id: f"event {e.data['n']} not signed" for e in events if e.data["n"] % 4 == 1}
            if forged:
                raise Refused(forged)
            rows = [{"event_id": e.id, "key": e.subject, "n": e.data["n"]} for e in events]
            await session.exec(insert(effects), params=rows)  # type: ignore[call-overload]

        runner = runner_of(bus, sessions, batch_handlers={TYPE: apply})
        try:
            await runner.handle_chunk([Record("t", 0, n, "a", event("a", n).to_bytes()) for n in range(8)])
            parked = await (await bus.consumer("inspect", [dlq_of("t")])).fetch(timeout_ms=100)
        finally:
            await bus.stop()
        assert calls == [list(range(8)), [0, 2, 3, 4, 6, 7]]
        assert [(dict(r.headers)["error"], dict(r.headers)["original_offset"]) for r in parked] == [
            (b"Refused: event 1 not signed", b"1"),
            (b"Refused: event 5 not signed", b"5"),
        ]
        async with sessions() as session:
            applied = (await session.exec(select(effects.c.n).order_by(effects.c.n))).scalars().all()  # type: ignore[call-overload]
            inbox = (await session.exec(select(func.count()).select_from(InboxEntry))).one()  # type: ignore[call-overload]
        assert applied == [0, 2, 3, 4, 6, 7] and inbox == (6,)
        assert (runner.processed, runner.dead_lettered) == (6, 2)

    async def test_a_flood_of_forgeries_refused_one_at_a_time_costs_a_pass_a_record_not_a_pass_a_forgery(
        self, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """A handler that takes one event at a time refuses each forgery on its own: after a second
        refusal the rest of the chunk goes one record at a time, each forgery parked once, each genuine
        event applied once."""
        from aftersales_shared.bus.embedded import EmbeddedBus
        from aftersales_shared.consumer import Refused

        bus = EmbeddedBus(tmp_path / "events.db")
        await bus.start()
        calls = 0

        async def handle(session: AsyncSession, e: CloudEvent) -> None:
            nonlocal calls
            calls += 1
            if e.data["n"] % 3:
                raise Refused({e.id: "forged"})
            await session.exec(insert(effects), params=[{"event_id": e.id, "key": "a", "n": e.data["n"]}])  # type: ignore[call-overload]

        runner = runner_of(bus, sessions, handlers={TYPE: handle})
        try:
            await runner.handle_chunk([Record("t", 0, n, "a", event("a", n).to_bytes()) for n in range(600)])
        finally:
            await bus.stop()
        async with sessions() as session:
            applied = (await session.exec(select(effects.c.n).order_by(effects.c.n))).scalars().all()  # type: ignore[call-overload]
        assert applied == list(range(0, 600, 3))
        assert (runner.processed, runner.dead_lettered) == (200, 400)
        assert calls < 3 * 600

    async def test_an_event_from_a_topic_its_contract_does_not_name_is_parked(
        self, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """Each topic has one producer: a principal that may write the tracking topic must not speak for
        case-api through it. The same event on its own topic is applied."""
        from aftersales_shared import contracts, topics
        from aftersales_shared.bus.embedded import EmbeddedBus

        bus = EmbeddedBus(tmp_path / "events.db")
        await bus.start()
        kind = contracts.CASHBACK_CANCELLED.type
        applied: list[str] = []

        async def handle(session: AsyncSession, e: CloudEvent) -> None:
            applied.append(e.id)

        runner = runner_of(bus, sessions, topics=[topics.CASHBACK, topics.TRACKING], handlers={kind: handle})

        def record(topic: str, event_id: str) -> Record:
            return Record(
                topic, 0, 1, "a", event("a", 1, event_id).model_copy(update={"type": kind}).to_bytes()
            )

        try:
            await runner.handle_chunk([record(topics.TRACKING, "evt-smuggled")])
            await runner.handle(record(topics.TRACKING, "evt-smuggled-alone"))
            await runner.handle_chunk([record(topics.CASHBACK, "evt-genuine")])
            parked = await (await bus.consumer("inspect", [topics.dlq(topics.TRACKING)])).fetch(
                timeout_ms=100
            )
        finally:
            await bus.stop()
        assert applied == ["evt-genuine"]
        assert [dict(r.headers)["error"].decode() for r in parked] == [
            f"Refused: {kind} is published on {topics.CASHBACK} only, not on {topics.TRACKING}"
        ] * 2

    async def test_a_record_that_is_not_an_event_is_parked_and_its_chunk_applied_as_one(
        self, sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A warehouse's one garbage record per fetch must not send every fetch one record at a time (about
        60 times slower on the watcher's ingest): it is parked before the chunk is applied."""
        from aftersales_shared.bus.embedded import EmbeddedBus

        bus = EmbeddedBus(tmp_path / "events.db")
        await bus.start()
        chunks: list[list[int]] = []

        async def apply(session: AsyncSession, events: list[CloudEvent]) -> None:
            chunks.append([e.data["n"] for e in events])

        runner = runner_of(bus, sessions, batch_handlers={TYPE: apply})
        records = [Record("t", 0, n, "a", event("a", n).to_bytes()) for n in range(6)]
        records.insert(3, Record("t", 0, 99, "a", b'{"not": "an event"}'))
        try:
            await runner.handle_chunk(records)
            parked = await (await bus.consumer("inspect", [dlq_of("t")])).fetch(timeout_ms=100)
        finally:
            await bus.stop()
        assert chunks == [[0, 1, 2, 3, 4, 5]]
        assert [r.value for r in parked] == [b'{"not": "an event"}']
        assert dict(parked[0].headers)["error"].startswith(b"not a CloudEvent")
        assert not [r for r in caplog.records if "one by one" in r.getMessage()]
