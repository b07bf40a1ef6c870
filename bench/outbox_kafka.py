"""Outbox → Kafka → consumer benchmark (ARCHITECTURE.md "Performance targets", P2), each path beside a bare
aiokafka baseline measured in the same run.

  (a) latency at a paced rate (default 1,000 events/s for 10 s, after 1 s of warm-up that is not counted)
      outbox    events committed with `add_event` in small transactions (`--txn-size` events each, 10 by
                default) on PostgreSQL; the real OutboxRelay (woken by the commit, as in a service) publishes
                them through KafkaBus; the services' ConsumerRunner (a fetch per transaction, an inbox
                row per event) consumes them
      bare      an AIOKafkaProducer with KafkaBus's settings (idempotent, acks=all, linger 2 ms) sends the
                same rate; an AIOKafkaConsumer `getmany` loop (offsets committed per batch) reads it
      latency = consume time - commit time (the time is carried in the event data; for the outbox it is
      taken just before the commit). The consumers run in subprocesses (`--consumers` members of one
      group; a consumer is another service), the producing side in this process (the relay runs inside
      the service). Each line also says the rate at which the consumers got through the events: below
      the offered rate, they could not keep up and the latency is queueing.
  (b) drain rate of a backlog (default 100,000 events)
      outbox    rows pre-inserted (CloudEvent envelopes, as `add_event` builds them), then an OutboxRelay
                started; events/s from the relay's start until a consumer has seen them all
      bare      an AIOKafkaProducer sends as many messages of the same size as fast as it can; events/s
                from the first send until a consumer has seen them all
      The consumer in (b) is a bare `getmany` counting loop in a subprocess, for both paths, so that
      the rate measured is the relay's, not the handlers'.

Prints the numbers, the ratios outbox/bare and the P2 targets (p99 <= 200 ms at 1,000 events/s;
backlog drained at >= 10k events/s). Ratios are printed, never asserted.

    .venv/bin/python bench/outbox_kafka.py [--database-url URL] [--bootstrap-servers HOST:PORT]
        [--rate 1000] [--seconds 10] [--txn-size 10] [--consumers 1] [--backlog 100000] [--only latency|drain]
Needs the broker of `infra/kafka/kafka.sh up` (reached as its admin: `kafka.sh env`) and the database of
`infra/postgres/pg.sh up`; uses a database and topics of its own, dropped at the end. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

DEFAULT_SERVER_URL = "postgresql+asyncpg://aftersales:aftersales@127.0.0.1:15432/"
DEFAULT_SERVERS = "127.0.0.1:19092"
EVENT_TYPE = "bench.tick.v1"
PARTITIONS = 6
TICK = 0.005  # the paced producers act every 5 ms


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# ---------------------------------------------------------------------------------------------- consumers


async def consume(kind: str, servers: str, topic: str, group: str, database_url: str) -> None:
    """Subprocess: read `topic` as a member of `group`. Prints "ready" once it has partitions, then "seen N"
    as it goes, and when a line arrives on stdin (or it closes), "result {json}" and exits.

    kind: `runner` (the services' ConsumerRunner: a fetch in one transaction with an inbox row per event;
    latency per event), `bare` (a getmany loop, offsets committed per batch; latency per message), `count`
    (the same loop; when the first and the last message arrived).
    """
    from aiokafka import AIOKafkaConsumer

    latencies: dict[int, float] = {}
    count = 0
    first_seen = last_seen = 0.0

    def seen(data: dict[str, Any]) -> None:
        nonlocal first_seen, last_seen
        if data.get("phase") == "measure":
            now = time.time()
            latencies.setdefault(data["n"], now - data["t"])
            first_seen = first_seen or now
            last_seen = now

    async def until_stopped(work: asyncio.Task[None]) -> None:
        stop = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
        reported = -1
        while not stop.done():
            if work.done():
                work.result()  # a consumer that died: raise here, the parent sees it
            now_seen = count if kind == "count" else len(latencies)
            if now_seen != reported:
                print(f"seen {now_seen}", flush=True)
                reported = now_seen
            await asyncio.sleep(0.05)
        work.cancel()
        with suppress(asyncio.CancelledError):
            await work

    if kind == "runner":
        from aftersales_shared.clock import SystemClock
        from aftersales_shared.db import make_engine, session_factory
        from aftersales_shared.events import CloudEvent
        from aftersales_shared.testing_kafka import broker_access
        from sqlmodel.ext.asyncio.session import AsyncSession

        engine = make_engine(database_url)
        bus = broker_access(servers).bus(client_id="bench-consumer", topics=[topic])

        async def handle(_session: AsyncSession, event: CloudEvent) -> None:
            seen(event.data)  # consume time: when the handler gets the event

        from aftersales_shared.consumer import ConsumerRunner

        runner = ConsumerRunner(
            bus=bus,
            sessions=session_factory(engine),
            clock=SystemClock(),
            group=group,
            topics=[topic],
            handlers={EVENT_TYPE: handle},
        )
        task = asyncio.create_task(runner.run())
        while runner._consumer is None or not runner._consumer._consumer.assignment():
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await until_stopped(task)
        await engine.dispose()
    else:
        from aftersales_shared.testing_kafka import broker_access

        consumer = AIOKafkaConsumer(
            topic,
            **broker_access(servers).client_options(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()

        async def loop() -> None:
            nonlocal count, first_seen, last_seen
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if not batches:
                    continue
                now = time.time()
                for messages in batches.values():
                    count += len(messages)
                    if kind == "bare":
                        for message in messages:
                            seen(json.loads(message.value)["data"])
                if kind == "count":
                    first_seen = first_seen or now
                    last_seen = now
                await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in batches.items()})

        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=50)
            print("ready", flush=True)
            await until_stopped(asyncio.create_task(loop()))
        finally:
            await consumer.stop()
    result = {"count": count, "first": first_seen, "last": last_seen, "latencies": latencies}
    print(f"result {json.dumps(result)}", flush=True)


class Consumers:
    """`n` consumer subprocesses of one kind, members of one group."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs
        self.seen = [0] * len(procs)
        self.results: list[dict[str, Any]] = [{} for _ in procs]
        self._readers = [asyncio.create_task(self._read(i)) for i in range(len(procs))]

    @classmethod
    async def start(
        cls, kind: str, args: argparse.Namespace, topic: str, n: int = 1, database_url: str = ""
    ) -> Consumers:
        group = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        procs = []
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--consume",
                kind,
                "--bootstrap-servers",
                args.bootstrap_servers,
                "--topic",
                topic,
                "--group",
                group,
                "--database-url",
                database_url,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                limit=64 * 1024 * 1024,
            )
            procs.append(proc)
        for proc in procs:  # each has partitions: the last join's rebalance is over
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                for p in procs:
                    p.kill()
                raise RuntimeError(f"{kind} consumer did not start: {line!r}")
        return cls(procs)

    async def _read(self, i: int) -> None:
        stdout = self.procs[i].stdout
        assert stdout is not None
        async for line in stdout:
            word, _, rest = line.decode().partition(" ")
            if word == "seen":
                self.seen[i] = int(rest)
            elif word == "result":
                self.results[i] = json.loads(rest)

    async def wait_for(self, want: int, within: float) -> None:
        deadline = time.monotonic() + within
        while sum(self.seen) < want and time.monotonic() < deadline:
            if any(p.returncode is not None for p in self.procs):
                raise RuntimeError("a consumer process exited early")
            await asyncio.sleep(0.01)

    async def stop(self) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
        try:
            await asyncio.wait_for(asyncio.gather(*self._readers, *(p.wait() for p in self.procs)), 30)
        except TimeoutError:
            for proc in self.procs:
                if proc.returncode is None:
                    proc.kill()
            raise
        return self.results

    async def latencies(self, want: int, within: float) -> tuple[list[float], float]:
        """The latency of each measured event, and the rate at which they were consumed (events/s)."""
        await self.wait_for(want, within)
        results = await self.stop()
        merged: dict[str, float] = {}
        for result in results:
            for n, latency in result["latencies"].items():
                merged.setdefault(n, latency)
        firsts = [r["first"] for r in results if r["first"]]
        span = max(r["last"] for r in results) - min(firsts) if firsts else 0.0
        return list(merged.values()), len(merged) / span if span > 0 else 0.0


# ---------------------------------------------------------------------------------------------- producers


async def paced(
    rate: int, seconds: float, warmup: float, send: Callable[[int, str], Coroutine[Any, Any, None]]
) -> int:
    """Call `send(n, phase)` `rate` times a second (in bursts every TICK), warm-up first; measured count."""
    tasks: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception():
            errors.append(task.exception())  # type: ignore[arg-type]

    measured = 0
    for phase, duration in (("warm", warmup), ("measure", seconds)):
        total = round(rate * duration)
        start = time.monotonic()
        for n in range(total):
            due = start + n / rate
            if (delay := due - time.monotonic()) > TICK:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(n, phase))
            tasks.add(task)
            task.add_done_callback(done)
        if phase == "measure":
            measured = total
    if tasks:
        await asyncio.wait(set(tasks))
    if errors:
        raise errors[0]
    return measured


def bare_producer(servers: str) -> Any:
    from aftersales_shared.testing_kafka import broker_access
    from aiokafka import AIOKafkaProducer

    # The settings of KafkaBus's producer.
    return AIOKafkaProducer(
        **broker_access(servers).client_options(),
        client_id="bench-bare",
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=10_000,
    )


# ---------------------------------------------------------------------------------------------- database


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def delete_topics(servers: str, topics: list[str]) -> None:
    """Leave the broker as we found it: topics add up, and slow down a broker restart."""
    from aftersales_shared.testing_kafka import broker_access
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**broker_access(servers).client_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics(topics, timeout_ms=10_000)
    except Exception as exc:  # cleanup only
        print(f"(could not delete the bench topics: {exc})", file=sys.stderr)
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------------------- the runs


@dataclass
class Setup:
    args: argparse.Namespace
    url: str
    engine: Any
    sessions: Any
    bus: Any
    topics: dict[str, str]


class Tick(BaseModel):
    n: int
    t: float  # time.time() just before the commit (outbox) or the send (bare)
    phase: str
    order: str = ""  # the message key (outbox)


async def latency_bare(s: Setup) -> tuple[list[float], float]:
    want = round(s.args.rate * s.args.seconds)
    consumers = await Consumers.start("bare", s.args, s.topics["bare-latency"], s.args.consumers)
    producer = bare_producer(s.args.bootstrap_servers)
    await producer.start()
    futures: list[asyncio.Future[Any]] = []

    async def send(n: int, phase: str) -> None:
        value = json.dumps({"data": {"n": n, "t": time.time(), "phase": phase}}).encode()
        futures.append(await producer.send(s.topics["bare-latency"], value, key=f"order-{n % 97}".encode()))

    try:
        await paced(s.args.rate, s.args.seconds, 1.0, send)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return await consumers.latencies(want, 60)


async def latency_outbox(s: Setup, kind: str = "runner") -> tuple[list[float], float]:
    from aftersales_shared.clock import SystemClock
    from aftersales_shared.contracts import Contract
    from aftersales_shared.db import unit_of_work
    from aftersales_shared.outbox import OutboxRelay, add_event

    clock = SystemClock()
    want = round(s.args.rate * s.args.seconds)
    topic = s.topics[f"outbox-latency-{kind}"]
    contract = Contract(EVENT_TYPE, Tick, topic, key="order")
    consumers = await Consumers.start(kind, s.args, topic, s.args.consumers, s.url)
    relay = OutboxRelay(s.sessions, s.bus, clock)
    relay.watch()  # woken by our commits, as in a service
    relay.start()
    pending: list[tuple[int, str]] = []

    async def commit(n: int, phase: str) -> None:
        pending.append((n, phase))
        if len(pending) < s.args.txn_size:
            return
        batch = pending[:]
        pending.clear()
        async with unit_of_work(s.sessions) as session:
            for m, m_phase in batch:
                add_event(
                    session,
                    contract,
                    Tick(n=m, t=time.time(), phase=m_phase, order=f"order-{m % 97}"),
                    source="/bench",
                    subject=str(m),
                    at=clock.now(),
                )

    try:
        await paced(s.args.rate, s.args.seconds, 1.0, commit)
        return await consumers.latencies(want, 60)
    finally:
        await relay.stop()


async def drain_bare(s: Setup, sample: bytes) -> tuple[float, float]:
    """(producer → consumer events/s, producer alone events/s)."""
    n = s.args.backlog
    consumers = await Consumers.start("count", s.args, s.topics["bare-drain"])
    producer = bare_producer(s.args.bootstrap_servers)
    await producer.start()
    try:
        started = time.time()
        futures = [
            await producer.send(s.topics["bare-drain"], sample, key=f"order-{i % 97}".encode())
            for i in range(n)
        ]
        await asyncio.gather(*futures)
        sent = time.time() - started
    finally:
        await producer.stop()
    await consumers.wait_for(n, 120)
    seen = (await consumers.stop())[0]
    return seen["count"] / (seen["last"] - started), n / sent


async def drain_outbox(s: Setup) -> tuple[float, float, float]:
    """(relay → consumer events/s, relay publish-and-mark events/s, seconds to insert the backlog)."""
    from aftersales_shared.clock import SystemClock
    from aftersales_shared.events import envelope
    from aftersales_shared.outbox import OutboxMessage, OutboxRelay
    from sqlalchemy import insert

    clock = SystemClock()
    n = s.args.backlog
    loading = time.monotonic()
    for chunk in range(0, n, 5_000):
        rows = []
        for i in range(chunk, min(n, chunk + 5_000)):
            event = envelope(
                source="/bench",
                type=EVENT_TYPE,
                subject=str(i),
                at=clock.now(),
                data=Tick(n=i, t=0.0, phase="drain"),
            )
            rows.append(
                {
                    "event_id": event.id,
                    "topic": s.topics["outbox-drain"],
                    "key": f"order-{i % 97}",
                    "payload": event.to_bytes(),
                    "created_at": event.time,
                }
            )
        async with s.engine.begin() as conn:
            await conn.execute(insert(OutboxMessage), rows)
    loading = time.monotonic() - loading
    consumers = await Consumers.start("count", s.args, s.topics["outbox-drain"])
    relay = OutboxRelay(s.sessions, s.bus, clock)
    started = time.time()
    relay.start()
    try:
        while relay.published < n and time.time() - started < 180:
            await asyncio.sleep(0.01)
        relay_done = time.time() - started
        await consumers.wait_for(n, 180)
        seen = (await consumers.stop())[0]
    finally:
        await relay.stop()
    return seen["count"] / (seen["last"] - started), relay.published / relay_done, loading


async def run(args: argparse.Namespace) -> None:
    from aftersales_shared.clock import SystemClock
    from aftersales_shared.db import make_engine, session_factory
    from aftersales_shared.events import envelope
    from aftersales_shared.outbox import InboxEntry, OutboxMessage
    from aftersales_shared.testing_kafka import broker_access

    run_id = uuid.uuid4().hex[:8]
    names = ("bare-latency", "outbox-latency-runner", "bare-drain", "outbox-drain")
    topics = {name: f"bench.{run_id}.{name}" for name in names}
    print(
        f"outbox → Kafka → consumer, P2 (PostgreSQL {args.database_url.rsplit('@', 1)[-1]}, Kafka "
        f"{args.bootstrap_servers}, {PARTITIONS} partitions, {os.cpu_count()} CPUs)",
        flush=True,
    )
    bare: tuple[list[float], float] = ([], 0.0)
    outbox: tuple[list[float], float] = ([], 0.0)
    drains: dict[str, float] = {}
    async with fresh_database(args.database_url) as url:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: OutboxMessage.__table__.create(c))
            await conn.run_sync(lambda c: InboxEntry.__table__.create(c))
        bus = broker_access(args.bootstrap_servers).bus(
            client_id=f"bench-{run_id}",
            partitions=PARTITIONS,
            topics=list(topics.values()),
        )
        await bus.start()  # creates the topics
        s = Setup(args, url, engine, session_factory(engine), bus, topics)
        try:
            if args.only in (None, "latency"):
                bare = await latency_bare(s)
                outbox = await latency_outbox(s)
            if args.only in (None, "drain"):
                sample = envelope(
                    source="/bench",
                    type=EVENT_TYPE,
                    subject="0",
                    at=SystemClock().now(),
                    data=Tick(n=0, t=0.0, phase="drain"),
                ).to_bytes()
                drains["bare"], drains["bare_send"] = await drain_bare(s, sample)
                drains["outbox"], drains["relay"], drains["loading"] = await drain_outbox(s)
        finally:
            await bus.stop()
            await engine.dispose()
            await delete_topics(args.bootstrap_servers, bus.topics)
    if bare[0]:
        report_latency(args, bare, outbox)
    if drains:
        report_drain(args, drains)


def report_latency(
    args: argparse.Namespace,
    bare_run: tuple[list[float], float],
    outbox_run: tuple[list[float], float],
) -> None:
    want = round(args.rate * args.seconds)

    def line(name: str, values: list[float], rate: float) -> str:
        if not values:
            return f"  {name:<8} no events seen"
        missing = f"  MISSING {want - len(values)} (timed out)" if len(values) < want else ""
        return (
            f"  {name:<8} {len(values):>6} events  p50 {percentile(values, 50) * 1000:8.1f} ms  "
            f"p99 {percentile(values, 99) * 1000:8.1f} ms  max {max(values) * 1000:8.1f} ms  "
            f"(consumed at {rate:,.0f}/s){missing}"
        )

    (bare, bare_rate), (outbox, outbox_rate) = bare_run, outbox_run
    print(
        f"\n(a) commit-to-consume latency at {args.rate:,} events/s for {args.seconds:g} s "
        f"({args.consumers} consumer process(es); outbox: {args.txn_size} event(s) per transaction, "
        f"the services' ConsumerRunner)"
    )
    print(line("bare", bare, bare_rate))
    print(line("outbox", outbox, outbox_rate))
    if outbox and bare:
        p99 = percentile(outbox, 99) * 1000
        ok = p99 <= 200 and len(outbox) == want
        print(
            f"  ratio outbox/bare: p50 {percentile(outbox, 50) / percentile(bare, 50):.1f}x, "
            f"p99 {percentile(outbox, 99) / percentile(bare, 99):.1f}x   "
            f"P2 target p99 <= 200 ms: {p99:,.0f} ms {'OK' if ok else 'MISSED'}"
        )


def report_drain(args: argparse.Namespace, d: dict[str, float]) -> None:
    print(f"\n(b) drain of a {args.backlog:,}-event backlog (consumer: a bare getmany counting loop)")
    print(
        f"  bare     producer → consumer {d['bare']:9,.0f} events/s  (producer alone {d['bare_send']:,.0f}/s)"
    )
    print(
        f"  outbox   relay → consumer    {d['outbox']:9,.0f} events/s  (relay publish-and-mark "
        f"{d['relay']:,.0f}/s; backlog inserted in {d['loading']:.1f} s)"
    )
    print(
        f"  ratio outbox/bare {d['outbox'] / d['bare']:.2f}x   P2 target >= 10,000 events/s: "
        f"{d['outbox']:,.0f} {'OK' if d['outbox'] >= 10_000 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_SERVERS)
    )
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--txn-size", type=int, default=10, help="events per outbox transaction in (a)")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--consumers",
        type=int,
        default=1,
        help="consumer processes (one group) in (a), for the outbox and the bare path alike",
    )
    parser.add_argument("--only", choices=["latency", "drain"], help="run only part (a) or (b)")
    parser.add_argument("--consume", choices=["runner", "bare", "count"], help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        asyncio.run(consume(args.consume, args.bootstrap_servers, args.topic, args.group, args.database_url))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
