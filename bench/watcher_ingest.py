"""Watcher ingest benchmark (ARCHITECTURE.md "Performance targets", P3): tracking events from Kafka into the
watcher's PostgreSQL database, beside a bare aiokafka `getmany` loop over the same topic, in one run.

Produces `--events` tracking events (default 200,000: 40,000 parcels x created, picked_up, in_transit,
out_for_delivery, delivered, interleaved as warehouses send them) as CloudEvents keyed by tracking number
to a fresh `logistics.tracking.v1` in a namespace of its own (a KAFKA_TOPIC_PREFIX; 6 partitions): the
watcher takes tracking events from that topic only. Then, each reading the whole topic with a consumer
group of its own:
  bare        AIOKafkaConsumer.getmany(max_records=2000) counting messages, offsets committed per batch
  watcher     the watcher's consumer (the shared ConsumerRunner with the service's handlers) on
              KafkaBus, into a freshly migrated PostgreSQL database: a fetch of up to 4,000 records
              (LOGISTICS_WATCHER_INGEST_BATCH_SIZE) is applied in one transaction (history rows, which
              deduplicate the scans, parcel states, milestones to the outbox)
  per-record  the shared ConsumerRunner (one transaction per event) with the same
              handlers, on the first `--per-record-events` events only (default 10,000): the path the
              watcher would have without batching
Rates are events per second between the first and the last event handled. Prints them and the ratio
watcher/bare beside the P3 targets (>= 20k events/s per process; >= 0.3x bare). Never asserted.

    .venv/bin/python bench/watcher_ingest.py [--events 200000] [--bootstrap-servers 127.0.0.1:19092]
        [--database-url postgresql+asyncpg://aftersales:aftersales@127.0.0.1:15432/]
Needs `infra/kafka/kafka.sh up` (reached as its admin: `kafka.sh env`) and `infra/postgres/pg.sh up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from aftersales_shared.app import keep_startup_objects_out_of_gc
from aftersales_shared.clock import FrozenClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.contracts import TRACKING_SCAN
from aftersales_shared.db import make_engine, session_factory
from aftersales_shared.events import CloudEvent
from aftersales_shared.migrations import upgrade
from aftersales_shared.testing_kafka import broker_access
from aftersales_shared.topics import TRACKING
from create_case import CLK_TCK, CpuMeter
from logistics_watcher.config import Settings
from logistics_watcher.consumers import DEDUPLICATED, event_handlers
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from stall_scan import DEFAULT_SERVER_URL, SERVICE_DIR

STEPS = ("created", "picked_up", "in_transit", "out_for_delivery", "delivered")
PARTITIONS = 6
START = datetime(2026, 11, 3, tzinfo=UTC)


def events(total: int) -> list[tuple[str, bytes]]:
    parcels = total // len(STEPS)
    out = []
    for step, status in enumerate(STEPS):
        for i in range(parcels):
            tracking_no = f"BN{i:08d}"
            data = {
                "event_id": f"{tracking_no}-{step}",
                "tracking_no": tracking_no,
                "carrier": "SF",
                "order_id": f"o-{i}",
                "shop_id": "shop-a",
                "status": status,
                "occurred_at": (START + timedelta(hours=6 * step, seconds=i % 3600)).isoformat(),
                "location": "杭州转运中心",
                "signed_by": "recipient" if status == "delivered" else None,
            }
            event = CloudEvent(
                id=f"evt-{tracking_no}-{step}",
                source="/warehouse-bench",
                type=TRACKING_SCAN.type,
                subject=tracking_no,
                time=START,
                data=data,
            )
            out.append((tracking_no, event.to_bytes()))
    return out


async def produce(servers: str, prefix: str, total: int) -> None:
    from aiokafka import AIOKafkaProducer

    broker = broker_access(servers)  # the admin: the bench's topics are its own
    bus = broker.bus(client_id="bench-admin", partitions=PARTITIONS, topic_prefix=prefix, topics=[TRACKING])
    await bus.ensure_topics()
    topic = prefix + TRACKING
    producer = AIOKafkaProducer(**broker.client_options(), acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in events(total)]
        await asyncio.gather(*futures)
        print(f"produced {total:,} events to {topic} in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        await producer.stop()


async def bare(servers: str, prefix: str, total: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        prefix + TRACKING,
        **broker_access(servers).client_options(),
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                continue
            first = first or time.perf_counter()
            seen += sum(len(messages) for messages in batches.values())
            await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in batches.items()})
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - first)


@asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        await upgrade(SERVICE_DIR, url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def through_watcher(
    servers: str, prefix: str, server_url: str, total: int, batched: bool, seconds: float
) -> tuple[float, int]:
    """Events/s through the watcher's consumer (batched or one per transaction), and how many it handled."""
    async with fresh_database(server_url) as url:
        engine = make_engine(url)
        settings, clock = Settings(), FrozenClock(START + timedelta(days=2))
        bus = broker_access(servers).bus(
            client_id="bench-watcher", partitions=PARTITIONS, topic_prefix=prefix, topics=[TRACKING]
        )
        common = {
            "bus": bus,
            "sessions": session_factory(engine),
            "clock": clock,
            "topics": [TRACKING],
            "group": f"bench-watcher-{uuid.uuid4().hex[:8]}",
        }
        single, batch = event_handlers(settings, clock)
        # batched: the service's consumer as configured; per-record: one record per fetch and transaction
        runner = ConsumerRunner(
            **common,
            handlers=single,
            batch_handlers=batch,
            deduplicated=DEDUPLICATED,
            fetch_max=settings.ingest_batch_size if batched else 1,
        )
        keep_startup_objects_out_of_gc()  # as the service's build_app does
        runner.start()
        meter = CpuMeter(os.getpid(), make_url(url).database)
        try:
            first, deadline = 0.0, time.perf_counter() + seconds
            while runner.processed < total and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
                if not first and runner.processed:
                    first, counted = time.perf_counter(), runner.processed
                    meter.__enter__()
            meter.__exit__()
            done, handled = time.perf_counter(), runner.processed
            print(f"  ({'batched' if batched else 'per-record'}: {cpu_per_event(meter, handled - counted)})")
        finally:
            await runner.stop()
            await bus.stop()
            await engine.dispose()
    return handled / (done - first), handled


def cpu_per_event(meter: CpuMeter, events: int) -> str:
    """CPU per event of this process and of its database's PostgreSQL backends (steadier than events/s on a
    shared machine), and how busy the rest of the machine was (the broker, and anyone else's jobs)."""
    seconds = {name: ticks / CLK_TCK for name, ticks in meter.ticks.items()}
    rest = seconds["machine"] - seconds["server"] - seconds["postgres"]
    us = {name: seconds[name] / max(events, 1) * 1e6 for name in ("server", "postgres")}
    return (
        f"CPU per event: this process {us['server']:.0f} us, PostgreSQL {us['postgres']:.0f} us; "
        f"this process busy {seconds['server'] / meter.wall:.0%} of the time, "
        f"the rest of the machine {rest / meter.wall:.0%} of a core"
    )


async def main(args: argparse.Namespace) -> int:
    prefix = f"bench.{uuid.uuid4().hex[:8]}."  # the watcher reads tracking events from their own topic only
    await produce(args.bootstrap_servers, prefix, args.events)
    bare_rate = await bare(args.bootstrap_servers, prefix, args.events)
    print(f"bare getmany   {bare_rate:10,.0f} events/s", flush=True)
    rate, handled = await through_watcher(
        args.bootstrap_servers, prefix, args.database_url, args.events, True, 150
    )
    settings = Settings()
    print(
        f"watcher        {rate:10,.0f} events/s  ({handled:,} events, fetches of up to "
        f"{settings.ingest_batch_size:,})",
        flush=True,
    )
    one_rate, one_handled = await through_watcher(
        args.bootstrap_servers, prefix, args.database_url, args.per_record_events, False, 60
    )
    print(
        f"per-record     {one_rate:10,.0f} events/s  ({one_handled:,} events, one record per transaction)",
        flush=True,
    )
    ratio: Callable[[float], str] = lambda r: f"{r / bare_rate:.2f}x bare"  # noqa: E731
    print("\nP3 targets: >= 20,000 events/s per process; >= 0.3x a bare aiokafka getmany loop")
    print(f"  watcher    {rate:10,.0f} events/s  {ratio(rate)}")
    print(f"  per-record {one_rate:10,.0f} events/s  {ratio(one_rate)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-record-events", type=int, default=10_000)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:19092")
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="a PostgreSQL server")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
