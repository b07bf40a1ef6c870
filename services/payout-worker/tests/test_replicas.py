"""Two worker replicas on one PostgreSQL database never submit (or query) the same payout: claims are
SELECT … FOR UPDATE SKIP LOCKED, and `submitted` is committed before the provider is called."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aftersales_shared.calendar import BusinessCalendar
from aftersales_testing import fresh_postgres_database
from payout_testing import FakeProvider, approved, at, running_worker
from payout_worker.engine import PayoutEngine
from payout_worker.models import Payout
from sqlmodel import update

pytestmark = pytest.mark.postgres


async def test_two_replicas_pay_each_payout_once(tmp_path: Path) -> None:
    async with fresh_postgres_database("payout_worker_r") as url:
        async for w in running_worker(
            tmp_path, database_url=url, database_name=url.rsplit("/", 1)[1], batch_size=40, concurrent_calls=3
        ):
            provider: FakeProvider = w.provider
            other = FakeProvider(w.clock)
            other.executed = provider.executed  # one provider, two clients
            provider.delay = other.delay = 0.05
            await w.deliver(*(approved(f"cb-{i:03}", when=at("2026-11-05 10:00")) for i in range(400)))
            w.clock.set(at("2026-11-05 17:30"))
            replica = PayoutEngine(
                w.app.state.sessions, other, w.clock, BusinessCalendar(), w.app.state.settings
            )
            assert len(await w.engine.close_due_batches()) == 10
            await asyncio.gather(w.engine.tick(), replica.tick())

            sent = Counter(t.out_biz_no for call in provider.calls + other.calls for t in call)
            assert len(sent) == 400 and set(sent.values()) == {1}
            assert provider.calls and other.calls  # both replicas worked
            assert set((await w.statuses()).values()) == {"paid"}
            assert all(len(call) <= 40 for call in provider.calls + other.calls)

            # Both replicas find the same "crashed" payouts: each is queried by one of them, once.
            async with w.app.state.sessions() as session:
                await session.exec(update(Payout).values(status="submitted", check_after=w.clock.now()))
                await session.commit()
            await asyncio.gather(w.engine.tick(), replica.tick())
            queried = Counter(n for query in provider.queries + other.queries for n in query)
            assert len(queried) == 400 and set(queried.values()) == {1}
            assert set((await w.statuses()).values()) == {"paid"}
            assert (
                sum(len(call) for call in provider.calls + other.calls) == 400
            )  # found paid: nothing sent again
