"""Scale-out, proven: two replicas of each service on PostgreSQL and a Kafka broker with 12 partitions per
topic, while one replica of each is killed (SIGKILL) mid-flow and started again, which makes every consumer
group rebalance twice.

Through it flow tracking events (published by the warehouse, on their own namespace of topics and groups)
and cashback approvals (over HTTP, to either case-api replica, as a load balancer would, with a retry on the
other replica when one is gone):

- the parcels that arrive produce exactly their scans, and the stalled ones exactly one alert each, which
  case-api turns into exactly one logistics case per order;
- every approval becomes one payout, executed once by the simulator, and reported back once: each task
  paid, with one customer notification.

Sizes: SCALE_TRACKING_EVENTS and SCALE_APPROVALS, 4,000 and 400 by default so that the suite's run stays
short on a two-core machine; the issue's 20,000 and 2,000 pass too and take about ten minutes there (the
HTTP flow of the approvals is the slow part). Each replica's throughput (events its consumers handled per
second: the survivors' over the whole flow, the victims' before the kill and after the restart) is printed,
so `pytest -s` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aftersales_shared import contracts, topics
from aftersales_shared.background import RESTARTS as RESTARTED
from aftersales_shared.bus import OutRecord
from aftersales_shared.consumer import CONSUMER_LAG, EVENTS_HANDLED
from aftersales_shared.events import CloudEvent
from aftersales_shared.testing_kafka import ADMIN
from aftersales_testing import free_port, fresh_postgres_database, kafka_broker, scrape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .harness import DATABASES, iso, order

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]

BIN = Path(sys.executable).parent
SERVICES = ("case-api", "logistics-watcher", "payout-worker")
PARTITIONS = 12
EVENTS = int(os.environ.get("SCALE_TRACKING_EVENTS", "4000"))
APPROVALS = int(os.environ.get("SCALE_APPROVALS", "400"))
STALLED = max(1, EVENTS // 40)  # parcels with one scan, 30 hours old: one `stalled` alert each
STEPS = ("created", "picked_up", "in_transit", "out_for_delivery", "delivered")
DELIVERED = (EVENTS - STALLED) // len(STEPS)  # parcels with all five scans, within the last five hours
CONCURRENCY = 16  # HTTP requests in flight
TASKS_PER_ORDER = 20  # 5.00 each on line L1 (238.00 paid): 100.00 of it
CASHBACK_ORDERS = -(-APPROVALS // TASKS_PER_ORDER)
SLICES = 10
HANDLED = EVENTS_HANDLED.describe()[0].name + "_total"  # the runner's counter, as /metrics shows it
LAG = CONSUMER_LAG.describe()[0].name  # one sample per partition a replica's consumer reads now
RESTARTS = RESTARTED.describe()[0].name + "_total"  # background loops that failed and started again


@dataclass
class Replica:
    service: str
    name: str  # "case-api-a"
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    mark_at: tuple[float, float] = (0.0, 0.0)  # (when, events handled then) of the last mark
    lives: list[tuple[str, float, float]] = field(default_factory=list)  # (span, events handled, seconds)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / self.service), "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.mark_at = (time.monotonic(), 0.0)

    def kill(self) -> None:
        """SIGKILL, no goodbye: no offsets committed, no consumer group left cleanly."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    async def handled(self, client: httpx.AsyncClient) -> float:
        """The events this process's consumers handled since it started."""
        return (await scrape(client)).total(HANDLED, outcome="handled")

    async def mark(self, client: httpx.AsyncClient, label: str) -> None:
        """Close a span of this process's life: the events handled in it, and per second."""
        now, events = time.monotonic(), await self.handled(client)
        since, before = self.mark_at
        self.lives.append((label, events - before, now - since))
        self.mark_at = (now, events)


class Cluster:
    """The replicas, and HTTP to a service the way a load balancer sends it: round robin, and to the other
    replica when one does not answer."""

    def __init__(self, replicas: list[Replica], key: str) -> None:
        self.replicas = replicas
        self.clients = {
            r.name: httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{r.port}", headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
            for r in replicas
        }
        self.turn = Counter[str]()
        self.server_errors: list[str] = []

    def of(self, service: str) -> list[Replica]:
        return [r for r in self.replicas if r.service == service]

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        replicas = self.of(service)
        for attempt in range(40):
            replica = replicas[(self.turn[service] + attempt) % len(replicas)]
            try:
                response = await self.clients[replica.name].request(method, path, **kwargs)
            except httpx.TransportError:
                await asyncio.sleep(0.1)  # that replica is gone (or not back yet): the other one
                continue
            if response.status_code >= 500:
                self.server_errors.append(f"{replica.name} {method} {path}: {response.status_code}")
            self.turn[service] += 1
            return response
        raise AssertionError(f"no replica of {service} answered {method} {path}")

    async def ok(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(service, method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def ready(self, replica: Replica, timeout: float = 90) -> None:
        deadline, answer = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            assert replica.process is not None
            assert replica.process.poll() is None, f"{replica.name} exited:\n{tail(replica.log)}"
            with contextlib.suppress(httpx.TransportError):
                response = await self.clients[replica.name].get("/readyz")
                if response.status_code == 200:
                    return
                answer = response.text
            await asyncio.sleep(0.2)
        raise AssertionError(f"{replica.name} not ready in {timeout} s ({answer}):\n{tail(replica.log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def until(what: str, probe: Callable[[], Awaitable[bool]], timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.5)
    logs = "\n".join(f"--- {r.name}\n{tail(r.log, 15)}" for r in cluster.replicas)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


async def count(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


def tracking_events(now: datetime) -> list[OutRecord]:
    """The warehouse's scans: stalled parcels (one scan 30 hours ago) and delivered ones (five scans in the
    last five hours, each parcel's in order on its key), interleaved as many warehouses would send them."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(STALLED):
        out.append(scan(f"ST{i:07d}", f"o-st-{i}", "in_transit", now - timedelta(hours=30), 0))
    for step, status in enumerate(STEPS):
        at = now - timedelta(hours=5 - step)
        for i in range(DELIVERED):
            out.append(scan(f"DL{i:07d}", f"o-dl-{i}", status, at, step))
    return [
        OutRecord(
            topics.TRACKING,
            data["tracking_no"],
            CloudEvent(
                id=f"evt-{data['event_id']}",
                source="/warehouse",
                type=contracts.TRACKING_SCAN.type,
                subject=data["tracking_no"],
                time=now,
                data=data,
            ).to_bytes(),
        )
        for data in (d for _, d in out)
    ]


def scan(tracking_no: str, order_id: str, status: str, at: datetime, step: int) -> tuple[str, dict[str, Any]]:
    return tracking_no, {
        "event_id": f"{tracking_no}-{step}",
        "tracking_no": tracking_no,
        "carrier": "SF",
        "order_id": order_id,
        "shop_id": "shop-e2e",
        "status": status,
        "occurred_at": iso(at),
        "signed_by": "recipient" if status == "delivered" else None,
    }


@contextlib.asynccontextmanager
async def cluster_of_two(tmp_path: Path) -> AsyncIterator[tuple[Cluster, dict[str, AsyncEngine], Any, str]]:
    broker = kafka_broker()
    namespace = f"scale.{uuid.uuid4().hex[:8]}."
    key = "scale-" + uuid.uuid4().hex
    async with AsyncExitStack() as stack:
        urls = {
            service: await stack.enter_async_context(
                fresh_postgres_database(service.replace("-", "_") + "_x2")
            )
            for service in SERVICES
        }
        engines = {s: create_async_engine(url, pool_size=2) for s, url in urls.items()}
        for engine in engines.values():
            stack.push_async_callback(engine.dispose)
        await broker.grant(namespace)
        admin = broker.bus(ADMIN, client_id="scale-admin", topic_prefix=namespace, partitions=PARTITIONS)
        await admin.start()  # every topic (and its .dlq) with 12 partitions, before any service makes one
        stack.push_async_callback(admin.stop)
        warehouse = broker.bus(
            topics.WAREHOUSE,
            client_id="scale-warehouse",
            topic_prefix=namespace,
            topics=[topics.TRACKING],
            dead_letter_topics=[],
        )
        await warehouse.start()
        stack.push_async_callback(warehouse.stop)

        base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")}
        base |= broker.services_env() | {
            "DATA_DIR": str(tmp_path / "data"),  # one approval key pair for case-api and payout-worker
            "DEV_API_KEY": key,
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": os.environ["TEST_DATABASE_URL"],
            "KAFKA_TOPIC_PREFIX": namespace,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "PAYOUT_WORKER_TICK_SECONDS": "0.2",
            "LOGISTICS_WATCHER_SCAN_INTERVAL_SECONDS": "1",
        }
        base |= {f"{DATABASES[s]}_DATABASE_NAME": url.rsplit("/", 1)[1] for s, url in urls.items()}
        simulator_port = free_port()
        base["PAYOUT_WORKER_SIMULATOR_URL"] = f"http://127.0.0.1:{simulator_port}"
        replicas = [
            Replica("payout-simulator", "payout-simulator", simulator_port, {}, tmp_path / "simulator.log")
        ]
        for service in SERVICES:
            for copy in "ab":
                replicas.append(
                    Replica(service, f"{service}-{copy}", free_port(), {}, tmp_path / f"{service}-{copy}.log")
                )
        for r in replicas:
            r.env = base | {r.service.upper().replace("-", "_") + "_PORT": str(r.port)}
        cluster = Cluster(replicas, key)
        for client in cluster.clients.values():
            stack.push_async_callback(client.aclose)
        for r in replicas:
            stack.callback(r.stop)
        # The first replica of each migrates its database; case-api's makes the approval key pair first.
        by_name = {r.name: r for r in replicas}
        first = ["case-api-a"], ["logistics-watcher-a", "payout-worker-a", "payout-simulator"]
        waves = [
            *([by_name[n] for n in names] for names in first),
            [r for r in replicas if r.name.endswith("-b")],
        ]
        for wave in waves:
            for r in wave:
                r.start()
            await asyncio.gather(*(cluster.ready(r) for r in wave))
        yield cluster, engines, warehouse, namespace


async def test_two_replicas_each_lose_one_mid_flow_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    async with cluster_of_two(tmp_path) as (cluster, db, warehouse, _):
        consumers = [r for r in cluster.replicas if r.service in SERVICES]
        for r in consumers:
            await r.mark(cluster.clients[r.name], "idle start")
        started = time.monotonic()
        now = datetime.now(UTC)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def bounded(request: Awaitable[Any]) -> Any:
            async with sem:
                return await request

        # The orders: those of the stalled parcels (their alerts become cases) and those the cashback is for.
        await asyncio.gather(
            *(
                bounded(cluster.ok("case-api", "PUT", f"/v1/orders/{order_id}", json=body))
                for order_id, body in [
                    *((f"o-st-{i}", order(f"ST{i:07d}", signed=False)) for i in range(STALLED)),
                    *((f"o-cb-{n}", order(f"CB{n:07d}", signed=True)) for n in range(CASHBACK_ORDERS)),
                ]
            )
        )
        approved: list[str] = []

        async def cashback(i: int) -> None:
            body = {
                "order_id": f"o-cb-{i // TASKS_PER_ORDER}",
                "line_id": "L1",
                "reason": "other",
                "amount": "5.00",
                "payee": {"alipay_account": f"buyer{i}@example.com", "name": "张三"},
            }
            task = await cluster.ok(
                "case-api", "POST", "/v1/cashback-tasks", json=body, headers={"Idempotency-Key": f"cb-{i}"}
            )
            answer = await cluster.call("case-api", "POST", f"/v1/cashback-tasks/{task['id']}/approve")
            if answer.status_code == 409:  # a retry after the replica that approved it died
                answer = await cluster.call("case-api", "GET", f"/v1/cashback-tasks/{task['id']}")
            assert answer.json()["status"] == "approved", answer.text
            approved.append(task["id"])

        scans = tracking_events(now)
        slices = [scans[k::SLICES] for k in range(SLICES)]  # each parcel's scans stay in order
        # The last slice of scans and the last tenth of the approvals wait for the restarted replicas to
        # read partitions again, so that they have work after the restart however fast the rest went.
        rejoined = asyncio.Event()
        held_back = APPROVALS - APPROVALS // SLICES

        async def feed() -> None:
            """The warehouse's scans keep coming while the approvals do: a slice per tenth of them."""
            for k, part in enumerate(slices):
                while len(approved) < k * APPROVALS // SLICES:
                    await asyncio.sleep(0.1)
                if k == SLICES - 1:
                    await rejoined.wait()
                await warehouse.publish_batch(part)

        async def approval(i: int) -> None:
            if i >= held_back:
                await rejoined.wait()
            await bounded(cashback(i))

        flow = asyncio.gather(feed(), *(approval(i) for i in range(APPROVALS)))

        async def busy() -> bool:
            return len(approved) >= APPROVALS * 4 // 10

        await until("four tenths of the approvals", busy, 600, cluster)
        victims = [r for r in cluster.replicas if r.name.endswith("-b")]
        for r in victims:
            await r.mark(cluster.clients[r.name], "until killed")
            r.kill()
        killed_at = time.monotonic() - started
        await asyncio.sleep(2)  # the groups rebalance onto the survivors, then again as the victims return
        for r in victims:
            r.start()
        for r in victims:
            await cluster.ready(r)

        reading: dict[str, int] = {}  # partitions each replica's consumer reads, at the last look

        async def reading_again() -> bool:
            """Every replica, the restarted ones included, reads partitions."""
            for r in consumers:
                reading[r.name] = len((await scrape(cluster.clients[r.name])).matching(LAG))
            return all(reading.values())

        try:
            await until("the restarted replicas to be assigned partitions", reading_again, 120, cluster)
        except AssertionError as e:
            raise AssertionError(f"partitions read per replica: {reading}") from e
        rejoined.set()
        await flow
        flowed_at = time.monotonic() - started

        # The watcher: every scan once, every stalled parcel one alert, every alert one case in case-api.
        watcher, case_api, payout = db["logistics-watcher"], db["case-api"], db["payout-worker"]

        async def ingested() -> bool:
            return await count(watcher, "SELECT count(*) FROM scans") == len(scans)

        await until(f"{len(scans)} scans", ingested, 300, cluster)

        async def cases_opened() -> bool:
            sql = "SELECT count(*) FROM cases WHERE reason = 'no_tracking_update'"
            return await count(case_api, sql) >= STALLED

        await until(f"{STALLED} logistics cases", cases_opened, 300, cluster)

        # Payouts: every approval one payout; ops pays now; every task hears it was paid.
        async def in_the_ledger() -> bool:
            return await count(payout, "SELECT count(*) FROM payouts") >= APPROVALS

        await until(f"{APPROVALS} payouts", in_the_ledger, 300, cluster)

        async def all_paid() -> bool:
            if (
                await count(case_api, "SELECT count(*) FROM cashback_tasks WHERE status = 'paid'")
                >= APPROVALS
            ):
                return True
            if await count(payout, "SELECT count(*) FROM payouts WHERE status IN ('pending', 'batched')"):
                await cluster.ok("payout-worker", "POST", "/v1/batches/flush")
            return False

        await until(f"{APPROVALS} tasks paid", all_paid, 300, cluster)
        await asyncio.sleep(2)  # anything doubled lands now
        done_at = time.monotonic() - started

        # ---- no event lost, no effect doubled
        assert await count(watcher, "SELECT count(DISTINCT event_id) FROM scans") == len(scans)
        statuses = dict(await rows(watcher, "SELECT status, count(*) FROM parcels GROUP BY status"))
        assert statuses == {"delivered": DELIVERED, "in_transit": STALLED}, statuses
        alerts = await rows(watcher, "SELECT tracking_no, kind, status FROM alerts")
        assert sorted(alerts) == sorted((f"ST{i:07d}", "stalled", "open") for i in range(STALLED))
        opened = await rows(
            watcher,
            "SELECT key, count(*) FROM outbox WHERE payload LIKE :t GROUP BY key",
            t=f'%"type":"{contracts.ALERT_OPENED.type}"%'.encode(),
        )
        assert len(opened) == STALLED and {n for _, n in opened} == {1}, "an alert was announced twice"
        per_order = await rows(
            case_api,
            "SELECT order_id, count(*) FROM cases WHERE reason = 'no_tracking_update' GROUP BY order_id",
        )
        assert sorted(o for o, _ in per_order) == sorted(f"o-st-{i}" for i in range(STALLED))
        assert {n for _, n in per_order} == {1}, "an order got two logistics cases"

        payouts = await rows(payout, "SELECT cashback_task_id, out_biz_no, status FROM payouts")
        assert len(payouts) == APPROVALS and {p.cashback_task_id for p in payouts} == set(approved)
        assert {p.status for p in payouts} == {"paid"}
        transfers = (await cluster.ok("payout-simulator", "GET", "/admin/transfers"))["transfers"]
        executed = Counter(t["out_biz_no"] for t in transfers if t["status"] == "SUCCESS")
        assert set(executed) == {p.out_biz_no for p in payouts} and set(executed.values()) == {1}
        assert (await cluster.ok("payout-simulator", "GET", "/admin/stats"))["executed"] == APPROVALS
        tasks = await rows(case_api, "SELECT id, status, payout_id FROM cashback_tasks")
        assert len(tasks) == APPROVALS and {t.status for t in tasks} == {"paid"}
        notices = await rows(
            case_api,
            "SELECT payload FROM outbox WHERE payload LIKE :t",
            t=f'%"type":"{contracts.NOTIFICATION_REQUESTED.type}"%'.encode(),
        )
        notified = Counter(json.loads(n.payload)["data"]["cashback_task_id"] for n in notices)
        assert set(notified) == set(approved) and set(notified.values()) == {1}, "a payment notified twice"
        assert not cluster.server_errors, cluster.server_errors[:10]
        # No background loop of any replica failed on the way (a consumer's did when a rebalance took a
        # partition while its chunk was handled): each is started again, but a failure is a bug.
        for r in consumers:
            restarts = (await scrape(cluster.clients[r.name])).total(RESTARTS)
            assert not restarts, f"{r.name}: {restarts} background loop failures\n{tail(r.log)}"

        # ---- per-replica throughput (the survivors' over the whole flow, the victims' per life)
        for r in consumers:
            await r.mark(cluster.clients[r.name], "after restart" if r.name.endswith("-b") else "whole flow")
        report = [
            f"scale-out: {len(scans)} tracking events, {APPROVALS} cashback approvals, "
            f"{PARTITIONS} partitions; -b replicas killed at {killed_at:.1f} s, "
            f"HTTP flow done at {flowed_at:.1f} s, all settled at {done_at:.1f} s"
        ]
        for r in consumers:
            for label, events, seconds in r.lives[1:]:
                rate = events / seconds if seconds else 0.0
                report.append(
                    f"  {r.name:<20} {label:<14} {events:>7.0f} events in {seconds:6.1f} s = {rate:7.1f}/s"
                )
        print("\n".join(report))
        # The restarted replicas were given partitions again (the groups rebalanced) and worked them.
        assert all(r.lives[-1][1] > 0 for r in victims), report
