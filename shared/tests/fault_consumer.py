"""A ConsumerRunner in a process of its own, for test_faults.py (which kills it with SIGKILL).

    python fault_consumer.py DATABASE_URL BOOTSTRAP_SERVERS TOPIC GROUP

Each event's effect is one row in `fault_effects` (event id + this process id), written in the same
transaction as the runner's inbox row. Runs until it is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, func, insert

EVENT_TYPE = "test.fault.v1"
effects_metadata = MetaData()
# No unique constraint on event_id on purpose: a double effect must show up as a second row.
effects = Table(
    "fault_effects",
    effects_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
)


async def main(url: str, servers: str, topic: str, group: str) -> None:
    from aftersales_shared.clock import SystemClock
    from aftersales_shared.consumer import ConsumerRunner
    from aftersales_shared.db import make_engine, session_factory
    from aftersales_shared.events import CloudEvent
    from aftersales_shared.testing_kafka import broker_access
    from sqlmodel.ext.asyncio.session import AsyncSession

    pid = os.getpid()
    engine = make_engine(url, pool_size=2, max_overflow=0)
    bus = broker_access(servers).bus(client_id=f"fault-consumer-{pid}", topics=[topic])  # as the admin

    async def apply(session: AsyncSession, event: CloudEvent) -> None:
        await session.exec(insert(effects).values(event_id=event.id, pid=pid))

    runner = ConsumerRunner(
        bus=bus,
        sessions=session_factory(engine),
        clock=SystemClock(),
        group=group,
        topics=[topic],
        handlers={EVENT_TYPE: apply},
        backoff=0.05,
    )
    runner.start()
    try:
        assert runner._task is not None
        await runner._task  # runs until killed; returning or raising is a failure the test sees
    finally:
        await bus.stop()
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(*sys.argv[1:5]))
