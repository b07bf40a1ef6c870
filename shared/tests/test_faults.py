"""Faults with 10,000 events in flight: outbox (PostgreSQL) → OutboxRelay → real Kafka → a ConsumerRunner
in a process of its own (shared/tests/fault_consumer.py) whose handler writes one effect row per event.

Whatever breaks (the broker killed with SIGKILL and started again on the same data, the consumer process
killed and replaced by a new member of the same group, the broker down while the application keeps
writing), every event must have exactly one effect: the relay may publish a row twice and the consumer may
read a record twice, and the inbox must make the second one a no-op.

These tests kill and restart the broker of infra/kafka/kafka.sh (the one on TEST_KAFKA_BOOTSTRAP_SERVERS);
each one starts it again on the way out, even when it fails, and deletes its topic.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aftersales_shared.bus import OutRecord
from aftersales_shared.bus.kafka import KafkaBus
from aftersales_shared.clock import SystemClock
from aftersales_shared.contracts import Contract
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.outbox import InboxEntry, OutboxMessage, OutboxRelay, add_event
from aftersales_shared.testing_kafka import broker_access
from aftersales_testing import fresh_postgres_database, infra_missing
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from fault_consumer import EVENT_TYPE, effects, effects_metadata
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "infra" / "kafka" / "kafka.sh"
CONSUMER_SCRIPT = Path(__file__).resolve().parent / "fault_consumer.py"
N = 10_000
PARTITIONS = 6
PUBLISH_TIMEOUT = 2.0  # KafkaBus gives up waiting for acks after this; the relay rolls back and backs off


class Tick(BaseModel):
    n: int
    order: str  # the message key: order-<n % 97>


async def kafka_sh(command: str, within: float = 90) -> int:
    """Run `infra/kafka/kafka.sh COMMAND` (bounded); its exit status."""
    proc = await asyncio.create_subprocess_exec(
        str(KAFKA_SH), command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"kafka.sh {command} did not finish within {within}s") from None
    if proc.returncode:
        log.warning(
            "kafka.sh %s exited %s: %s", command, proc.returncode, err.decode(errors="replace")[-2000:]
        )
    return proc.returncode or 0


async def delete_topics(servers: str, topics: list[str]) -> None:
    """Fresh topics per test add up, and a broker restarted after kill -9 recovers every partition."""
    admin = AIOKafkaAdminClient(**broker_access(servers).client_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics(topics, timeout_ms=10_000)
    except KafkaError as exc:
        log.warning("could not delete %s: %s", topics, exc)
    finally:
        await admin.close()


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], within: float, every: float = 0.1
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Rig:
    url: str
    servers: str
    topic: str
    group: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: KafkaBus
    relay: OutboxRelay
    logs: Path
    consumers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    added: int = 0

    async def add(self, count: int) -> float:
        """Commit `count` events in one transaction, the way a service does; the commit's duration."""
        started = time.monotonic()
        async with unit_of_work(self.sessions) as session:
            for n in range(self.added, self.added + count):
                add_event(
                    session,
                    Contract(EVENT_TYPE, Tick, self.topic, key="order"),
                    Tick(n=n, order=f"order-{n % 97}"),
                    source="/test/faults",
                    subject=str(n),
                    at=SystemClock().now(),
                )
        self.added += count
        return time.monotonic() - started

    def start_consumer(self) -> subprocess.Popen[bytes]:
        index = len(self.consumers)
        with open(self.logs / f"consumer-{index}.log", "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(CONSUMER_SCRIPT), self.url, self.servers, self.topic, self.group],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=ROOT,
            )
        self.consumers.append(proc)
        return proc

    def consumer_log(self) -> str:
        return "\n".join(
            f"--- consumer-{i}.log:\n{(self.logs / f'consumer-{i}.log').read_text()[-3000:]}"
            for i in range(len(self.consumers))
        )

    async def effects(self) -> tuple[int, int]:
        """(effect rows, distinct event ids among them)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.count(effects.c.event_id.distinct())).select_from(effects)
                )
            ).one()
            return int(row[0]), int(row[1])

    async def wait_effects(self, at_least: int, within: float) -> None:
        async def enough() -> bool:
            for i, proc in enumerate(self.consumers):
                if proc is self.consumers[-1] and proc.poll() is not None:
                    raise AssertionError(f"consumer-{i} exited ({proc.returncode})\n{self.consumer_log()}")
            return (await self.effects())[0] >= at_least

        try:
            await eventually(f"{at_least} effects", enough, within, every=0.2)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; effects {await self.effects()}, relay published "
                f"{self.relay.published}, backlog {await self.relay.backlog()}\n"
                f"{self.consumer_log()}"
            ) from None

    async def records_on_topic(self) -> int:
        """How many records the topic holds (end offsets; no transactions, so no control records)."""
        consumer = AIOKafkaConsumer(
            **self.bus.client_options(), enable_auto_commit=False, request_timeout_ms=10_000
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
            return sum(ends.values())
        finally:
            await consumer.stop()

    async def oldest_transaction(self) -> float:
        """Seconds the oldest open transaction on our database (other than this query's) has lasted."""
        async with self.engine.connect() as conn:
            return float(
                (
                    await conn.execute(
                        text(
                            "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) "
                            "FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                ).scalar_one()
            )

    async def assert_every_event_applied_exactly_once(self, within: float = 90) -> None:
        assert self.added == N
        await self.wait_effects(N, within)
        await asyncio.sleep(1.0)  # let a late double effect land before counting
        rows, distinct = await self.effects()
        async with self.engine.connect() as conn:
            missing = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM fault_effects e "
                        "WHERE e.event_id = o.event_id)"
                    )
                )
            ).scalar_one()
            inbox = (
                await conn.execute(
                    text("SELECT count(*) FROM inbox WHERE consumer_group = :g"), {"g": self.group}
                )
            ).scalar_one()
        on_topic = await self.records_on_topic()
        async with self.engine.connect() as conn:
            first, last = (
                await conn.execute(select(func.min(effects.c.applied_at), func.max(effects.c.applied_at)))
            ).one()
        log.warning(
            "%d events: %d effects (%d distinct), %d records on the topic (%d re-published), "
            "%d inbox rows; effects applied over %.1fs",
            N,
            rows,
            distinct,
            on_topic,
            on_topic - N,
            inbox,
            (last - first).total_seconds(),
        )
        assert (rows, distinct, missing, inbox) == (N, N, 0, N), self.consumer_log()
        assert on_topic >= N
        assert await self.relay.backlog() == 0
        assert self.relay._task is not None and not self.relay._task.done(), "the relay stopped"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    servers = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        infra_missing(
            "Apache Kafka", "run `make kafka-up` and export TEST_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092"
        )
    ours = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '19092')}"
    if servers != ours:
        pytest.skip(
            f"the fault tests kill and restart the broker of infra/kafka/kafka.sh ({ours}), not {servers}"
        )
    if await kafka_sh("status", within=30) != 0:
        infra_missing("Apache Kafka", "the fault tests need the broker of `infra/kafka/kafka.sh up` running")
    suffix = uuid.uuid4().hex[:8]
    async with fresh_postgres_database("faults") as url:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: OutboxMessage.__table__.create(c))  # type: ignore[attr-defined]
            await conn.run_sync(lambda c: InboxEntry.__table__.create(c))  # type: ignore[attr-defined]
            await conn.run_sync(effects_metadata.create_all)
        sessions = session_factory(engine)
        bus = broker_access(servers or "").bus(
            client_id=f"faults-{suffix}",
            partitions=PARTITIONS,
            topics=[f"test.faults.{suffix}"],
            publish_timeout=PUBLISH_TIMEOUT,
        )
        await bus.start()
        relay = OutboxRelay(sessions, bus, SystemClock())
        relay.watch()
        relay.start()
        the_rig = Rig(
            url=url,
            servers=servers or "",
            topic=f"test.faults.{suffix}",
            group=f"faults-{suffix}",
            engine=engine,
            sessions=sessions,
            bus=bus,
            relay=relay,
            logs=tmp_path,
        )
        try:
            yield the_rig
        finally:
            for proc in the_rig.consumers:
                proc.kill()
                proc.wait(timeout=10)
            # The broker is shared by the tests that follow: start it again whatever happened here.
            if await kafka_sh("status", within=30) != 0:
                assert await kafka_sh("start") == 0, "could not start the broker again"
            await the_rig.relay.stop()
            await asyncio.wait_for(bus.stop(), 30)
            await engine.dispose()
            await delete_topics(the_rig.servers, bus.topics)


class LostAcks:
    """The bus, but the `nth` publish_batch raises after the records are stored: the relay's crash between
    publishing a batch and marking it sent. The relay publishes the batch again: duplicates on the topic."""

    def __init__(self, bus: KafkaBus, nth: int) -> None:
        self._bus, self._nth, self.calls = bus, nth, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)

    async def publish_batch(self, records: Sequence[OutRecord]) -> None:
        await self._bus.publish_batch(records)
        self.calls += 1
        if self.calls == self._nth:
            raise KafkaError("injected: the batch was stored but the relay never heard back")


class TestFaults:
    async def test_broker_killed_mid_stream_and_started_again(self, rig: Rig) -> None:
        rig.start_consumer()
        for _ in range(3):
            await rig.add(2_000)
        await rig.wait_effects(1_500, within=30)
        # Events in flight on both sides: the relay publishing a fresh batch, the consumer working through
        # the first ones, when the broker dies.
        adding = asyncio.create_task(rig.add(2_000))
        assert await kafka_sh("kill9") == 0
        await adding
        await rig.add(2_000)
        await asyncio.sleep(1.0)
        assert await kafka_sh("start") == 0
        await rig.assert_every_event_applied_exactly_once()

    async def test_consumer_killed_mid_stream_and_replaced_in_the_same_group(self, rig: Rig) -> None:
        await rig.relay.stop()
        rig.relay = OutboxRelay(rig.sessions, LostAcks(rig.bus, nth=3), SystemClock())  # type: ignore[arg-type]
        rig.relay.watch()
        rig.relay.start()
        first = rig.start_consumer()
        for _ in range(5):
            await rig.add(2_000)
        await rig.wait_effects(3_000, within=30)
        first.kill()  # SIGKILL: handler transactions committed, offsets of the current batch not
        first.wait(timeout=10)
        applied_by_first = (await rig.effects())[0]
        assert applied_by_first < N
        rig.start_consumer()
        await rig.assert_every_event_applied_exactly_once()
        async with rig.engine.connect() as conn:
            pids = (await conn.execute(select(effects.c.pid, func.count()).group_by(effects.c.pid))).all()
        assert len(pids) == 2, pids
        assert await rig.records_on_topic() > N  # the re-published batch: the inbox made it a no-op

    async def test_broker_down_while_the_application_keeps_writing(
        self, rig: Rig, caplog: pytest.LogCaptureFixture
    ) -> None:
        rig.start_consumer()
        await rig.add(2_000)
        await rig.wait_effects(1_000, within=30)
        assert await kafka_sh("kill9") == 0
        ages: list[float] = []

        async def watch_transactions() -> None:
            while True:
                ages.append(await rig.oldest_transaction())
                await asyncio.sleep(0.2)

        watching = asyncio.create_task(watch_transactions())
        try:
            published = rig.relay.published
            commit_times = []
            for _ in range(8):
                commit_times.append(await rig.add(1_000))
                await asyncio.sleep(0.2)
            # The database side kept accepting writes; the relay waits, it did not crash and sent nothing.
            assert max(commit_times) < 2.0, commit_times
            assert await rig.relay.backlog() >= 8_000
            assert rig.relay.published == published
            assert rig.relay._task is not None and not rig.relay._task.done(), "the relay stopped"
            assert await kafka_sh("start") == 0  # ~7 s more without a broker
        finally:
            watching.cancel()
        # It backed off rather than waiting on the broker inside one long transaction.
        assert any(
            r.name == "aftersales_shared.outbox" and "cannot publish" in r.getMessage()
            for r in caplog.records
        )
        assert max(ages) < PUBLISH_TIMEOUT + 3, f"a transaction stayed open {max(ages):.1f}s"
        await rig.assert_every_event_applied_exactly_once()
