"""Stall-scan benchmark (ARCHITECTURE.md "Performance targets", P4): the watcher's detectors over 1M parcels,
beside a bare indexed count with the same predicate, on SQLite and on PostgreSQL.

Loads `--parcels` parcels (default 1,000,000) into a fresh database migrated with the watcher's own Alembic
history (so with its indexes), in bulk (COPY on PostgreSQL, executemany in one transaction on SQLite):
  5% stalled (in transit, last scan 25-70 h ago, a fifth of them 73-120 h ago: also suspected lost),
  20% moving normally (last scan < 23 h), 3% labelled today, 0.5% labelled > 24 h ago (no first scan),
  0.2% with a carrier exception, 1.3% returning/returned, the rest delivered (8% of those to a locker or
  station, with a false-delivery score). Then, with the clock at NOW:
  count       SELECT count(*) FROM parcels WHERE <the stalled rule's predicate>  (status IN moving statuses
              AND last_event_at < now - 24 h), as the stalled detector builds it; best of 5, measured
              after the first run, so on the same table (PostgreSQL: the same visibility map) as the rule
  first run   detectors.run with every parcel new to it: opens ~120k alerts (and as many outbox events)
              in one transaction
  stall rule  the stalled detector alone once its alerts are open (what every later run costs for it);
              best of 5
  steady run  detectors.run once nothing is new (all five rules); best of 5
Prints the times and the ratios to the count. Targets: a run over 1M parcels <= 2 s; <= 3x the count.
Ratios are printed, never asserted.

    .venv/bin/python bench/stall_scan.py [--parcels 1000000] [--targets sqlite,postgres]
        [--database-url postgresql+asyncpg://aftersales:aftersales@127.0.0.1:15432/]
PostgreSQL: `infra/postgres/pg.sh up` (the database is created and dropped by the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import logistics_watcher
from aftersales_shared.db import make_engine, session_factory
from aftersales_shared.migrations import upgrade
from logistics_watcher import detectors
from logistics_watcher.config import Settings
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

SERVICE_DIR = Path(logistics_watcher.__file__).parent  # alembic.ini and migrations/
DEFAULT_SERVER_URL = "postgresql+asyncpg://aftersales:aftersales@127.0.0.1:15432/"
NOW = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
COLUMNS = (
    "tracking_no",
    "carrier",
    "order_id",
    "shop_id",
    "warehouse_id",
    "direction",
    "status",
    "status_at",
    "last_event_at",
    "signed_by",
    "out_for_delivery_seen",
    "delivered_at",
    "returned_at",
    "false_delivery_score",
    "open_alerts",
    "created_at",
    "updated_at",
)
CARRIERS = ("SF", "YTO", "ZTO", "STO", "YD", "JD", "EMS")


def parcels(n: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    hours = timedelta(hours=1)
    for i in range(n):
        roll = rng.random()
        signed_by, score, delivered_at, returned_at, ofd = None, None, None, None, False
        if roll < 0.05:  # stalled
            status = rng.choice(("picked_up", "in_transit", "in_transit", "out_for_delivery"))
            age = rng.uniform(73, 120) if rng.random() < 0.2 else rng.uniform(25, 70)
        elif roll < 0.25:
            status, age = rng.choice(("picked_up", "in_transit", "out_for_delivery")), rng.uniform(0, 23)
        elif roll < 0.28:
            status, age = "created", rng.uniform(0, 23)
        elif roll < 0.285:
            status, age = "created", rng.uniform(25, 60)
        elif roll < 0.287:
            status, age = "exception", rng.uniform(0, 100)
        elif roll < 0.30:
            status, age = rng.choice(("returning", "returned")), rng.uniform(0, 200)
            returned_at = NOW - age * hours if status == "returned" else None
        else:
            status, age, ofd = "delivered", rng.uniform(0, 30 * 24), True
            delivered_at = NOW - age * hours
            if rng.random() < 0.08:
                signed_by, score = rng.choice(("locker", "station")), 0.4
            else:
                signed_by = "recipient"
        at = NOW - age * hours
        yield (
            f"T{i:09d}",
            rng.choice(CARRIERS),
            f"o-{i}",
            "shop-a",
            "WH-HZ",
            "outbound",
            status,
            at,
            at,
            signed_by,
            ofd,
            delivered_at,
            returned_at,
            score,
            0,
            at,
            at,
        )


async def load_postgres(url: str, n: int) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("parcels", records=parcels(n), columns=COLUMNS)
        await conn.execute("VACUUM ANALYZE parcels")
    finally:
        await conn.close()


def load_sqlite(path: Path, n: int) -> None:
    def fmt(value: Any) -> Any:
        # SQLAlchemy's SQLite DATETIME storage (UTC, as UTCDateTime stores it)
        return (
            value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value
        )

    conn = sqlite3.connect(path)
    try:
        marks = ", ".join("?" for _ in COLUMNS)
        with conn:
            conn.executemany(
                f"INSERT INTO parcels ({', '.join(COLUMNS)}) VALUES ({marks})",
                (tuple(fmt(v) for v in row) for row in parcels(n)),
            )
        conn.execute("ANALYZE")
    finally:
        conn.close()


@asynccontextmanager
async def database(target: str, server: str) -> AsyncIterator[str]:
    if target == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{folder}/watcher.db"
        return
    name = f"bench_watcher_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def best_of(times: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(times):
        started = time.perf_counter()
        result = await work()
        best = min(best, time.perf_counter() - started)
    return best, result


async def bench(target: str, args: argparse.Namespace) -> dict[str, float]:
    settings = Settings()
    async with database(target, args.database_url) as url:
        await upgrade(SERVICE_DIR, url)
        started = time.perf_counter()
        if target == "sqlite":
            await asyncio.to_thread(load_sqlite, Path(make_url(url).database or ""), args.parcels)
        else:
            await load_postgres(url, args.parcels)
        print(
            f"{target}: loaded {args.parcels:,} parcels in {time.perf_counter() - started:.1f} s", flush=True
        )
        engine = make_engine(url)
        sessions = session_factory(engine)
        stalled = next(rule for rule in detectors.rules(settings, NOW) if rule.kind == "stalled")
        try:

            async def count() -> int:
                async with sessions() as session:
                    query = select(func.count()).select_from(detectors.parcels).where(stalled.predicate)
                    return int((await session.exec(query)).one()[0])

            async def run() -> dict[str, int]:
                return await detectors.run(sessions, settings, NOW)

            async def stall_rule() -> int:
                async with sessions() as session:
                    return await detectors.waiting(session, stalled)

            fresh_count_s, matching = await best_of(5, count)
            cpu_started = time.process_time()
            first_s, opened = await best_of(1, run)
            first_cpu = time.process_time() - cpu_started
            count_s, _ = await best_of(5, count)
            rule_s, _ = await best_of(5, stall_rule)
            steady_s, again = await best_of(5, run)
            assert not any(again.values()), again
        finally:
            await engine.dispose()
    print(
        f"{target}: count {count_s * 1000:8.1f} ms  ({matching:,} stalled parcels; "
        f"{fresh_count_s * 1000:.1f} ms on the freshly loaded table)"
    )
    whose = "SQLite in it" if target == "sqlite" else "the server apart"
    print(
        f"{target}: first run {first_s * 1000:8.1f} ms  (opened {sum(opened.values()):,} alerts: {opened}; "
        f"CPU of this process {first_cpu:.2f} s, {whose})"
    )
    print(f"{target}: stall rule {rule_s * 1000:8.1f} ms  ratio {rule_s / count_s:5.2f}x the count")
    print(
        f"{target}: steady run {steady_s * 1000:8.1f} ms  ratio {steady_s / count_s:5.2f}x the count "
        f"(all five rules)",
        flush=True,
    )
    return {"count": count_s, "first": first_s, "rule": rule_s, "steady": steady_s}


async def main(args: argparse.Namespace) -> int:
    results = {target: await bench(target, args) for target in args.targets.split(",")}
    print("\nP4 targets: a run over 1M parcels <= 2 s; <= 3x a bare indexed count with the same predicate")
    for target, r in results.items():
        print(
            f"  {target:9s} count {r['count'] * 1000:7.1f} ms | stall rule {r['rule'] * 1000:7.1f} ms "
            f"({r['rule'] / r['count']:.2f}x) | steady run {r['steady'] * 1000:7.1f} ms "
            f"({r['steady'] / r['count']:.2f}x) | first run {r['first']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--targets", default="sqlite,postgres")
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="a PostgreSQL server")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
