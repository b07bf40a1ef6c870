"""The bus contract, on the embedded log and on a real Kafka broker: durable publish, ordering per key,
explicit offsets, at-least-once with exactly-once effect through the inbox, poison records to the DLQ."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aftersales_shared import topics as topic_module
from aftersales_shared.bus import Bus, OutRecord, Record
from aftersales_shared.clock import SystemClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.db import make_engine, session_factory
from aftersales_shared.events import CloudEvent
from aftersales_shared.logging import JsonFormatter
from aftersales_shared.outbox import InboxEntry, unseen
from bus_testing import topic_names
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False),
    Column("key", String),
)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
        await conn.run_sync(lambda c: InboxEntry.__table__.create(c))  # type: ignore[attr-defined]
    yield session_factory(engine)
    await engine.dispose()


def event(n: int, event_id: str | None = None) -> bytes:
    return CloudEvent(
        id=event_id or f"evt-{n}",
        source="/test",
        type="test.happened.v1",
        subject=str(n),
        time=datetime.now(UTC),
        data={"n": n},
    ).to_bytes()


async def drain(bus: Bus, group: str, topic: str, want: int, timeout: float = 30) -> list[Record]:
    consumer = await bus.consumer(group, [topic])
    got: list[Record] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.fetch(max_records=500, timeout_ms=200)
            got += batch
            if batch:
                await consumer.commit({(r.topic, r.partition): r.offset + 1 for r in batch})
    finally:
        await consumer.close()
    return got


class TestPublishAndConsume:
    async def test_records_arrive_in_order_per_key(self, bus: Bus) -> None:
        topic, _ = topic_names(bus)
        await bus.publish_batch([OutRecord(topic, f"order-{n % 3}", event(n)) for n in range(30)])
        got = await drain(bus, "g-order", topic, 30)
        assert len(got) == 30
        for key in ("order-0", "order-1", "order-2"):
            ns = [CloudEvent.from_bytes(r.value).data["n"] for r in got if r.key == key]
            assert ns == sorted(ns) and len(ns) == 10

    async def test_a_new_consumer_of_the_group_resumes_after_the_committed_offset(self, bus: Bus) -> None:
        topic, _ = topic_names(bus)
        await bus.publish_batch([OutRecord(topic, "k", event(n)) for n in range(5)])
        assert len(await drain(bus, "g-resume", topic, 5)) == 5
        await bus.publish_batch([OutRecord(topic, "k", event(n)) for n in range(5, 8)])
        again = await drain(bus, "g-resume", topic, 3)
        assert [CloudEvent.from_bytes(r.value).data["n"] for r in again] == [5, 6, 7]

    async def test_lag_counts_the_records_of_the_consumers_topics_not_yet_read(self, bus: Bus) -> None:
        topic, other = topic_names(bus)
        await bus.publish_batch([OutRecord(other, "k", event(n)) for n in range(4)])
        await bus.publish_batch([OutRecord(topic, "k", event(n)) for n in range(5)])
        consumer = await bus.consumer("g-lag", [topic])
        try:
            got: list[Record] = []
            for _ in range(100):
                if len(got) == 2:
                    break
                got += await consumer.fetch(max_records=2 - len(got), timeout_ms=200)
            assert sum((await consumer.lag()).values()) == 3
            assert {t for t, _ in await consumer.lag()} == {topic}
        finally:
            await consumer.close()


class TestConsumerRunner:
    async def _run(
        self,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        topic: str,
        fail_on: set[int] | None = None,
        deduplicated: tuple[str, ...] = (),
    ) -> ConsumerRunner:
        async def apply(session: AsyncSession, evt: CloudEvent) -> None:
            if fail_on and evt.data["n"] in fail_on:
                raise ValueError(f"cannot apply {evt.data['n']}")
            await session.exec(insert(effects).values(event_id=evt.id, key=evt.subject))  # type: ignore[call-overload]

        runner = ConsumerRunner(
            bus=bus,
            sessions=sessions,
            clock=SystemClock(),
            group="g-runner",
            topics=[topic],
            handlers={"test.happened.v1": apply, "test.other.v1": apply},
            deduplicated=deduplicated,
            max_attempts=2,
            backoff=0.01,
        )
        runner.start()
        return runner

    async def _count(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        async with sessions() as session:
            return int((await session.exec(select(func.count()).select_from(effects))).one()[0])  # type: ignore[call-overload]

    async def _wait_for(self, sessions: async_sessionmaker[AsyncSession], n: int, timeout: float = 30) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        while await self._count(sessions) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let anything extra (a double effect) land before we count
        return await self._count(sessions)

    async def test_redelivered_event_has_one_effect(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        await bus.publish_batch(
            [
                OutRecord(topic, "k", event(1)),
                OutRecord(topic, "k", event(1)),
                OutRecord(topic, "k", event(2)),
            ]
        )
        runner = await self._run(bus, sessions, topic)
        try:
            assert await self._wait_for(sessions, 2) == 2
        finally:
            await runner.stop()

    async def test_a_type_its_handler_deduplicates_gets_every_delivery_and_no_inbox_row(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        other = CloudEvent.from_bytes(event(3)).model_copy(update={"type": "test.other.v1"}).to_bytes()
        await bus.publish_batch(
            [OutRecord(topic, "k", raw) for raw in (event(1), other, event(1), other, event(2))]
        )
        runner = await self._run(bus, sessions, topic, deduplicated=("test.happened.v1",))
        try:
            assert await self._wait_for(sessions, 4) == 4  # 1 twice, 2, and the other type once (the inbox)
        finally:
            await runner.stop()
        async with sessions() as session:
            effect_keys = (await session.exec(select(effects.c.key).order_by(effects.c.id))).all()  # type: ignore[call-overload]
            inbox = (await session.exec(select(InboxEntry.event_id))).all()  # type: ignore[call-overload]
        assert [k for (k,) in effect_keys] == ["1", "3", "1", "2"]  # in order
        assert [i for (i,) in inbox] == ["evt-3"]

    async def test_poison_record_goes_to_the_dlq_and_later_records_still_flow(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        await bus.publish_batch(
            [
                OutRecord(topic, "k", b"not json at all"),
                OutRecord(topic, "k", event(1)),
                OutRecord(topic, "k", event(2)),
                OutRecord(topic, "k", event(3)),
            ]
        )
        runner = await self._run(bus, sessions, topic, fail_on={2})
        try:
            assert await self._wait_for(sessions, 2) == 2
            parked = await drain(bus, "g-dlq-reader", topic_module.dlq(topic), 2)
            assert len(parked) == 2
            errors = [dict(r.headers)["error"].decode() for r in parked]
            assert errors[0].startswith("not a CloudEvent")
            assert "cannot apply 2" in errors[1]
            assert runner.dead_lettered == 2
        finally:
            await runner.stop()

    async def test_a_failing_events_log_lines_name_it(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        topic, _ = topic_names(bus)
        await bus.publish(topic, "k", event(7, event_id="evt-poison"))
        runner = await self._run(bus, sessions, topic, fail_on={7})
        try:
            for _ in range(200):
                if runner.dead_lettered:
                    break
                await asyncio.sleep(0.05)
        finally:
            await runner.stop()
        lines = [
            json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name.startswith("aftersales")
        ]
        failed = [line for line in lines if line["message"].startswith(("handler failed", "event parked"))]
        assert len(failed) == 3  # two attempts, then parked
        assert all(line["event_id"] == "evt-poison" and line["topic"] == topic for line in failed)

    async def test_an_unregistered_type_is_counted_and_logged_another_groups_type_passed_over(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        topic, _ = topic_names(bus)

        def typed(n: int, type: str) -> bytes:
            at = datetime.now(UTC)
            return CloudEvent(id=f"evt-{n}", source="/test", type=type, time=at, data={"n": n}).to_bytes()

        await bus.publish_batch(
            [
                OutRecord(topic, "k", typed(1, "aftersales.case.approved.v1")),  # registered, not ours
                OutRecord(topic, "k", typed(2, "aftersales.case.teleported.v1")),  # in no registry
                OutRecord(topic, "k", event(3)),
            ]
        )
        runner = await self._run(bus, sessions, topic)
        try:
            assert await self._wait_for(sessions, 1) == 1
        finally:
            await runner.stop()
        assert (runner.unknown, runner.dead_lettered) == (1, 0)
        skipped = [r for r in caplog.records if "unregistered type" in r.getMessage()]
        assert len(skipped) == 1
        assert (
            skipped[0].levelname == "WARNING" and "aftersales.case.teleported.v1" in skipped[0].getMessage()
        )

    async def test_restarted_runner_applies_nothing_twice(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        topic, _ = topic_names(bus)
        await bus.publish_batch([OutRecord(topic, str(n % 4), event(n)) for n in range(200)])
        runner = await self._run(bus, sessions, topic)
        await self._wait_for(sessions, 60, timeout=10)
        await runner.stop()  # stopped mid-stream: offsets of the last batch may not be committed
        runner = await self._run(bus, sessions, topic)
        try:
            assert await self._wait_for(sessions, 200) == 200
        finally:
            await runner.stop()


class TestInbox:
    async def test_a_chunk_applies_the_first_delivery_of_an_id_not_a_later_one(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """A later record under an id already in the chunk (a replay, or a forgery reusing a genuine id)
        cannot stand in for the first."""
        first, later = (CloudEvent.from_bytes(event(n, event_id="evt-same")) for n in (1, 2))
        async with sessions() as session:
            fresh = await unseen(session, "g-inbox", [first, later], datetime.now(UTC))
        assert [e.data["n"] for e in fresh] == [1]


class TestTopicPrefix:
    async def test_the_cluster_sees_prefixed_topics_and_groups_the_services_do_not(self, bus: Bus) -> None:
        from aftersales_shared.bus.kafka import KafkaBus
        from aiokafka.admin import AIOKafkaAdminClient

        if not isinstance(bus, KafkaBus):
            pytest.skip("a Kafka setting")
        topic, _ = topic_names(bus)
        await bus.publish(topic, "k", event(1))
        [record] = await drain(bus, "g-prefix", topic, 1)
        assert record.topic == topic
        admin = AIOKafkaAdminClient(**bus.client_options())
        await admin.start()
        try:
            names = set(await admin.list_topics())
            groups = {g[0] for g in await admin.list_consumer_groups()}
        finally:
            await admin.close()
        assert {bus.prefix + topic, bus.prefix + topic_module.dlq(topic)} <= names and topic not in names
        assert bus.prefix + "g-prefix" in groups and "g-prefix" not in groups


class TestRebalance:
    async def test_a_partition_given_to_another_member_mid_chunk_is_left_uncommitted(self, bus: Bus) -> None:
        """A member handles a chunk of two partitions; meanwhile a second member joins and is given one of
        them. The first commits the partition it still owns and leaves the other to its new owner, where
        the records are read again, instead of failing (its consumer loop died of that)."""
        from aftersales_shared.bus.kafka import KafkaBus, KafkaConsumer

        if not isinstance(bus, KafkaBus):
            pytest.skip("the embedded log has one member per group")
        topic, _ = topic_names(bus)
        await bus.publish_batch([OutRecord(topic, f"k{n}", event(n)) for n in range(30)])
        first = await bus.consumer("g-rebalance", [topic])
        second: KafkaConsumer | None = None
        try:
            chunk: list[Record] = []
            for _ in range(100):
                chunk += await first.fetch(max_records=500, timeout_ms=200)
                if len({r.partition for r in chunk}) == 3:
                    break
            ends = {(r.topic, r.partition): r.offset + 1 for r in chunk}
            assert len(ends) == 3, ends
            second = await bus.consumer("g-rebalance", [topic])
            for _ in range(200):  # both members poll until the group has settled on two of them
                await asyncio.gather(first.fetch(timeout_ms=100), second.fetch(timeout_ms=100))
                if first._consumer.assignment() and second._consumer.assignment():
                    break
            kept = {(tp.topic.removeprefix(bus.prefix), tp.partition) for tp in first._consumer.assignment()}
            assert kept and kept < set(ends), kept
            await first.commit(ends)  # raised IllegalStateError for the partitions given away
            for (t, p), offset in ends.items():
                tp = first._partition(t, p)
                committed = await first._consumer.committed(tp)
                assert committed == (offset if (t, p) in kept else None), (t, p, committed)
        finally:
            await first.close()
            if second is not None:
                await second.close()
