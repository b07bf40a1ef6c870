"""The watcher on real Apache Kafka and PostgreSQL: scans in from logistics.tracking.v1 (duplicates
applied once), case-api's intercept request in from aftersales.cases.v1, findings and milestones out
through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.events import CloudEvent
from aftersales_testing import fresh_postgres_database, kafka_broker
from test_consumer import cloud_event, eventually, publish_case
from watcher_testing import Watcher, running_watcher, scan

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
H = timedelta(hours=1)


@pytest.fixture
async def kafka_watcher(tmp_path: Path) -> AsyncIterator[Watcher]:
    """A fresh database each time; the consumer group is kept, so a run reads only the scans published
    since the last (older ones would only add other parcels)."""
    broker = kafka_broker()  # as the admin: the test publishes the warehouse's scans as well
    async with (
        fresh_postgres_database("logistics_watcher_k") as url,
        running_watcher(
            tmp_path,
            database_url=url,
            bus=broker.bus(client_id="watcher-test"),
            background=True,
            consumer_group="logistics-watcher-kafka-test",
        ) as watcher,
    ):
        yield watcher


async def state(w: Watcher, tracking_no: str) -> dict[str, Any] | None:
    response = await w.call("GET", f"/v1/parcels/{tracking_no}", "support")
    return response.json() if response.status_code == 200 else None


class TestOnKafka:
    async def test_scans_from_kafka_once_each_and_the_findings_out(self, kafka_watcher: Watcher) -> None:
        w = kafka_watcher
        tracking_no = f"KF{uuid.uuid4().hex[:10].upper()}"
        events = [
            scan("picked_up", -30 * H, tracking_no=tracking_no),
            scan("in_transit", -26 * H, tracking_no=tracking_no),
        ]
        for event in [*events, events[1]]:  # the second scan delivered twice
            await w.bus.publish(
                topics.TRACKING, tracking_no, cloud_event("logistics.tracking.scan.v1", event)
            )
        parcel = await eventually(lambda: _with(w, tracking_no, "in_transit"), seconds=60)
        assert len(parcel["history"]) == 2  # the second scan, delivered twice, is in it once
        assert (await w.detect())["stalled"] >= 1
        assert await w.open_kinds(tracking_no) == ["stalled"]
        consumer = await w.bus.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topics.ALERTS])
        seen: list[CloudEvent] = []
        try:

            async def arrived() -> CloudEvent | None:
                seen.extend(CloudEvent.from_bytes(r.value) for r in await consumer.fetch(timeout_ms=200))
                return next((e for e in seen if e.data["tracking_no"] == tracking_no), None)

            found = await eventually(arrived, seconds=60)
        finally:
            await consumer.close()
        assert (found.type, found.data["kind"], found.data["order_id"]) == (
            "logistics.alert.opened.v1",
            "stalled",
            "o-1",
        )

    async def test_an_intercept_request_from_case_api(self, kafka_watcher: Watcher) -> None:
        w = kafka_watcher
        tracking_no, order_id = f"KF{uuid.uuid4().hex[:10].upper()}", f"o-{uuid.uuid4().hex[:8]}"
        await w.send(scan("in_transit", -5 * H, tracking_no=tracking_no, order_id=order_id))
        await publish_case(w.bus, "request_intercept", order_id=order_id)
        await w.send(scan("returning", -1 * H, tracking_no=tracking_no, order_id=order_id))
        seen = await eventually(lambda: _milestone_for(w, tracking_no), seconds=60)
        assert seen.data["order_id"] == order_id


async def _with(w: Watcher, tracking_no: str, status: str) -> dict[str, Any] | None:
    parcel = await state(w, tracking_no)
    return parcel if parcel and parcel["status"] == status else None


async def _milestone_for(w: Watcher, tracking_no: str) -> Any:
    # Delivered through the outbox once the request has been consumed and the scan applied.
    published = await w.published("logistics.parcel.intercepted")
    return next((e for e in published if e.data["tracking_no"] == tracking_no), None)
