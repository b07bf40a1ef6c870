"""The same ingest from logistics.tracking.v1, case-api's requests from aftersales.cases.v1, findings out on
logistics.alerts.v1 and the schedule, all through the embedded bus with the service's background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.bus import Bus
from aftersales_shared.events import CaseEvent, CloudEvent
from aftersales_shared.ids import new_id
from aftersales_shared.outbox import InboxEntry, OutboxMessage
from logistics_watcher.models import Parcel, ScanRecord
from watcher_testing import NOW, Watcher, running_watcher, scan

H = timedelta(hours=1)


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        if result := await check():
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def cloud_event(type: str, data: dict[str, Any], source: str = "/warehouse-hz") -> bytes:
    return CloudEvent(id=new_id("evt"), source=source, type=type, time=NOW, data=data).to_bytes()


async def publish_scans(bus: Bus, *events: dict[str, Any]) -> None:
    for event in events:
        await bus.publish(
            topics.TRACKING, event["tracking_no"], cloud_event("logistics.tracking.scan.v1", event)
        )


async def publish_case(bus: Bus, action: str, reason: str = "no_reason", order_id: str = "o-1") -> None:
    data = CaseEvent(
        case_id="case_1",
        order_id=order_id,
        shop_id="shop-a",
        remedy="refund_only",
        reason=reason,
        status="intercepting",
        action=action,
        version=2,
    ).model_dump(mode="json")
    past = {"open": "opened", "request_intercept": "intercept_requested"}[action]
    await bus.publish(topics.CASES, order_id, cloud_event(f"aftersales.case.{past}.v1", data, "/case-api"))


async def read(bus: Bus, topic: str, want: int, group: str = "test-reader") -> list[CloudEvent]:
    consumer = await bus.consumer(group, [topic])
    seen: list[CloudEvent] = []
    try:

        async def more() -> bool:
            seen.extend(CloudEvent.from_bytes(r.value) for r in await consumer.fetch(timeout_ms=100))
            return len(seen) >= want

        await eventually(more)
    finally:
        await consumer.close()
    return seen


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Watcher]:
    async with running_watcher(tmp_path, background=True) as watcher:
        yield watcher


class TestTrackingTopic:
    async def test_scans_from_the_bus_make_the_same_parcel(self, live: Watcher) -> None:
        raw = {
            k: v
            for k, v in scan(at=-1 * H, carrier_format="kuaidi100", carrier_status="303").items()
            if k != "status"
        }
        await publish_scans(live.bus, scan("in_transit", -5 * H), scan("out_for_delivery", -3 * H), raw)
        parcel = await eventually(lambda: _parcel_if(live, "delivered"))
        assert (parcel["signed_by"], len(parcel["history"])) == ("agent", 3)
        [delivered] = await read(live.bus, topics.PARCELS, 1)
        assert (delivered.type, delivered.data["tracking_no"]) == (
            "logistics.parcel.delivered.v1",
            "SF1000001",
        )

    async def test_redelivered_and_repeated_events_apply_once(self, live: Watcher) -> None:
        """Scans are applied once by their own event id, in the parcel's history: the runner keeps no inbox
        row for them, and a redelivered sign-off is not reported twice."""
        event = scan("delivered", -5 * H)
        body = cloud_event("logistics.tracking.scan.v1", event)
        for _ in range(2):
            await live.bus.publish(topics.TRACKING, "SF1000001", body)  # the same record twice
        await eventually(lambda: _parcel_if(live, "delivered"))
        await live.bus.publish(topics.TRACKING, "SF1000001", body)  # and again, once it was applied
        await publish_scans(live.bus, event, scan("in_transit", -6 * H))  # same event id, new envelope
        await eventually(lambda: _history_of(live, 2))
        assert await live.count(ScanRecord) == 2
        assert await live.count(InboxEntry) == 0
        assert [m.type for m in await read(live.bus, topics.PARCELS, 1)] == ["logistics.parcel.delivered.v1"]
        assert await live.count(OutboxMessage) == 1

    async def test_an_event_that_cannot_apply_goes_to_the_dlq(self, live: Watcher) -> None:
        await publish_scans(
            live.bus, scan("teleported", -1 * H), scan("in_transit", -1 * H, tracking_no="OK1")
        )
        [parked] = await read(live.bus, topics.dlq(topics.TRACKING), 1)
        assert parked.data["status"] == "teleported"
        assert await live.count(Parcel) == 1


class TestCaseTopic:
    async def test_an_intercept_request_from_case_api(self, live: Watcher) -> None:
        await publish_scans(live.bus, scan("in_transit", -5 * H))
        await eventually(lambda: _parcel_if(live, "in_transit"))
        await publish_case(live.bus, "request_intercept")
        await asyncio.sleep(0.5)
        await publish_scans(live.bus, scan("returning", -1 * H))
        [intercepted] = await read(live.bus, topics.PARCELS, 1)
        assert (intercepted.type, intercepted.data["order_id"]) == ("logistics.parcel.intercepted.v1", "o-1")

    async def test_a_false_delivery_case_confirms_the_suspicion(self, live: Watcher) -> None:
        await live.send(scan("in_transit", -5 * H), scan("delivered", -1 * H, signed_by="locker"))
        await live.detect()
        await publish_case(live.bus, "open", reason="false_delivery")
        alerts = await read(live.bus, topics.ALERTS, 2)
        assert [(a.type, a.data["kind"]) for a in alerts] == [
            ("logistics.alert.opened.v1", "suspected_false_delivery"),
            ("logistics.alert.confirmed.v1", "suspected_false_delivery"),
        ]


class TestSchedule:
    async def test_the_detectors_run_by_themselves(self, tmp_path: Path) -> None:
        async with running_watcher(tmp_path, background=True, scan_interval_seconds=0.05) as w:
            await w.send(scan("in_transit", -25 * H))
            [alert] = await read(w.bus, topics.ALERTS, 1)
            assert (alert.type, alert.data["kind"]) == ("logistics.alert.opened.v1", "stalled")


async def _parcel_if(w: Watcher, status: str) -> dict[str, Any] | None:
    response = await w.call("GET", "/v1/parcels/SF1000001", "support")
    return response.json() if response.status_code == 200 and response.json()["status"] == status else None


async def _history_of(w: Watcher, scans: int) -> bool:
    response = await w.call("GET", "/v1/parcels/SF1000001", "support")
    return response.status_code == 200 and len(response.json()["history"]) == scans


def test_now_is_aware() -> None:
    assert NOW.tzinfo is not None and isinstance(NOW, datetime)
