"""case-api → outbox → real Kafka → a consumer: each event's effect is applied once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared import topics
from aftersales_shared.clock import SystemClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.events import CloudEvent
from aftersales_testing import fresh_postgres_database, kafka_broker
from case_api.config import Settings
from case_api_testing import Api, running_api
from sqlmodel.ext.asyncio.session import AsyncSession

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
async def kafka_api(tmp_path: Path) -> AsyncIterator[Api]:
    broker = kafka_broker()  # as the admin: the test also reads case events in a group of its own
    async with fresh_postgres_database("case_api_k") as url:
        settings = Settings(data_dir=tmp_path, database_url=url, database_name=url.rsplit("/", 1)[1])
        async for api in running_api(settings, tmp_path, broker.bus(client_id="case-api-test")):
            yield api


class TestCaseEventsOnKafka:
    async def test_each_case_change_reaches_a_consumer_once(self, kafka_api: Api) -> None:
        api = kafka_api
        await api.put_order()
        case = (await api.open_case()).json()
        case = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        case = (await api.act(case, "approve")).json()

        seen: list[CloudEvent] = []

        async def record(_: AsyncSession, event: CloudEvent) -> None:
            if event.subject == case["id"]:
                seen.append(event)

        handlers = {
            t: record
            for t in (
                "aftersales.case.opened.v1",
                "aftersales.case.retention_recorded.v1",
                "aftersales.case.approved.v1",
            )
        }
        runner = ConsumerRunner(
            bus=api.bus,
            sessions=api.app.state.sessions,
            clock=SystemClock(),
            group=f"test-{uuid.uuid4().hex[:8]}",
            topics=[topics.CASES],
            handlers=handlers,
        )
        runner.start()
        try:
            for _ in range(300):
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            await runner.stop()
        assert [e.type for e in seen] == [
            "aftersales.case.opened.v1",
            "aftersales.case.retention_recorded.v1",
            "aftersales.case.approved.v1",
        ]
        assert all(e.data["order_id"] == "o-1" for e in seen)
        assert await api.app.state.relay.backlog() == 0
