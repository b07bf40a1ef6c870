"""A chunk of scans is validated in one call; an invalid one sends the chunk through again one scan at a time,
so that it alone is refused, by its index and with the reasons one scan alone would get. And the objects the
process holds once started are left out of garbage collections (P3), while later garbage is still freed.
A parcel's and a scan's times are the ingest's, sent once per chunk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.bus import Record
from aftersales_shared.contracts import TRACKING_SCAN
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import CloudEvent
from aftersales_shared.ids import new_id
from logistics_watcher import handlers
from logistics_watcher.models import Parcel, ScanRecord
from logistics_watcher.schemas import TrackingEventIn, field_errors
from pydantic import ValidationError
from sqlmodel import select
from watcher_testing import NOW, Watcher, scan

H = timedelta(hours=1)
INVALID = {
    "no status": {"status": None},
    "a NUL": {"location": "杭州\x00"},
    "a naive time": {"occurred_at": "2026-11-05T09:00:00"},
}


async def ingest(w: Watcher, events: list[Any]) -> handlers.IngestResult:
    async with unit_of_work(w.app.state.sessions) as session:
        return await handlers.ingest(session, events, settings=w.app.state.settings, now=w.clock.now())


def alone(event: Any) -> list[dict[str, Any]]:
    """The errors of this event validated on its own."""
    with pytest.raises(ValidationError) as refused:
        TrackingEventIn.model_validate(event)
    return field_errors(refused.value)


class TestOneValidationPerChunk:
    async def test_a_valid_chunk_applies_every_scan(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        events = [scan("in_transit", -h * H, tracking_no=f"SF{h}") for h in range(1, 6)]
        result = await ingest(w, events)
        assert (result.accepted, result.duplicates, result.rejected) == (5, [], [])
        assert [(await w.parcel(f"SF{h}"))["status"] for h in range(1, 6)] == ["in_transit"] * 5

    @pytest.mark.parametrize("position", [0, 2, 4])
    @pytest.mark.parametrize("flaw", list(INVALID))
    async def test_only_the_invalid_scan_is_refused_wherever_it_is(
        self, any_db_watcher: Watcher, position: int, flaw: str
    ) -> None:
        w = any_db_watcher
        events: list[Any] = [scan("in_transit", -h * H, tracking_no=f"SF{h}") for h in range(1, 5)]
        bad = {**scan("in_transit", -1 * H, tracking_no="SF9"), **INVALID[flaw]}
        events.insert(position, bad)
        result = await ingest(w, events)
        assert [(r.index, r.errors) for r in result.rejected] == [(position, alone(bad))]
        assert (result.accepted, result.duplicates) == (4, [])
        assert [(await w.parcel(f"SF{h}"))["status"] for h in range(1, 5)] == ["in_transit"] * 4
        assert (await w.call("GET", "/v1/parcels/SF9", "support")).status_code == 404

    async def test_a_chunk_of_nothing_but_invalid_scans(self, any_db_watcher: Watcher) -> None:
        events: list[Any] = ["not an event", {**scan(), **INVALID["no status"]}]
        result = await ingest(any_db_watcher, events)
        assert [r.index for r in result.rejected] == [0, 1] and result.accepted == 0


class TestTimesOfTheIngest:
    async def test_a_parcel_records_its_creation_and_last_change_and_each_scan_its_arrival(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        created = w.clock.now()
        await ingest(
            w, [scan("picked_up", -3 * H, tracking_no="SF1"), scan("picked_up", -3 * H, tracking_no="SF2")]
        )
        changed = w.clock.advance(minutes=5)
        first = scan("in_transit", -1 * H, tracking_no="SF1")
        assert (await ingest(w, [first, scan("in_transit", -1 * H, tracking_no="SF1")])).accepted == 2
        async with w.app.state.sessions() as session:
            parcel_times = {
                p.tracking_no: (p.created_at, p.updated_at)
                for p in (await session.exec(select(Parcel))).all()
            }
            scan_times = {s.event_id: s.received_at for s in (await session.exec(select(ScanRecord))).all()}
        assert parcel_times == {"SF1": (created, changed), "SF2": (created, created)}
        assert sorted(scan_times.values()) == [created, created, changed, changed]
        assert scan_times[first["event_id"]] == changed


def scan_event(data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(id=new_id("evt"), source="/warehouse-hz", type=TRACKING_SCAN.type, time=NOW, data=data)


class TestFromTheBus:
    async def test_a_bad_scan_is_parked_at_once_and_the_rest_of_its_fetch_applied(
        self, any_db_watcher: Watcher, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The fetch goes through again one scan at a time (a scan may be refused for another in its
        fetch); the scan refused on its own is parked at once with the reasons the API would give, without
        retries."""
        w = any_db_watcher
        runner = w.app.state.consumers[0]
        good = [scan("in_transit", -h * H, tracking_no=f"SF{h}") for h in range(1, 5)]
        bad = scan("in_transit", +2 * H, tracking_no="SF9")  # in the future
        scans = [*good[:2], bad, *good[2:]]
        records = [
            Record(topics.TRACKING, 0, n, s["tracking_no"], scan_event(s).to_bytes())
            for n, s in enumerate(scans)
        ]
        await runner.handle_chunk(records)
        assert [(await w.parcel(f"SF{h}"))["status"] for h in range(1, 5)] == ["in_transit"] * 4
        assert (await w.call("GET", "/v1/parcels/SF9", "support")).status_code == 404
        dlq = await w.app.state.bus.consumer("inspect", [topics.dlq(topics.TRACKING)])
        (parked,) = await dlq.fetch(timeout_ms=100)
        assert CloudEvent.from_bytes(parked.value).data == bad
        assert b"in the future" in dict(parked.headers)["error"]
        assert not [r for r in caplog.records if "attempt 2/" in r.getMessage()]  # no retries

    async def test_a_scan_refused_only_for_a_later_one_in_its_fetch_is_applied(
        self, any_db_watcher: Watcher
    ) -> None:
        """In-transit before the parcel's pickup scan, both in one fetch: checked together the first is
        refused as before the shipment; checked alone, in order, it is not. It must not be parked."""
        w = any_db_watcher
        runner = w.app.state.consumers[0]
        early = scan("in_transit", -5 * H, tracking_no="SF7")
        pickup = scan("picked_up", -3 * H, tracking_no="SF7")
        twin = [{**s, "tracking_no": "SF8", "event_id": f"{s['event_id']}-8"} for s in (early, pickup)]
        assert [r.index for r in (await ingest(w, twin)).rejected] == [0]  # refused, checked together
        records = [
            Record(topics.TRACKING, 0, n, "SF7", scan_event(s).to_bytes())
            for n, s in enumerate([early, pickup])
        ]
        await runner.handle_chunk(records)
        dlq = await w.app.state.bus.consumer("inspect-2", [topics.dlq(topics.TRACKING)])
        assert await dlq.fetch(timeout_ms=100) == []
