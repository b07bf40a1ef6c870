"""A parcel's state from its scans: placed by occurred_at, never backwards, each event once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from logistics_watcher.domain import Scan, fold
from logistics_watcher.models import ScanRecord
from watcher_testing import Watcher, scan

H = timedelta(hours=1)
T0 = datetime(2026, 11, 3, tzinfo=UTC)


def s(status: str, hours: float, signed_by: str | None = None) -> Scan:
    return Scan(
        event_id=f"{status}-{hours}",
        tracking_no="T",
        carrier="SF",
        status=status,  # type: ignore[arg-type]
        occurred_at=T0 + hours * H,
        signed_by=signed_by,
    )  # type: ignore[arg-type]


class TestFold:
    def test_the_order_of_arrival_does_not_matter(self) -> None:
        history = [
            s("created", 0),
            s("picked_up", 1),
            s("in_transit", 5),
            s("out_for_delivery", 20),
            s("delivered", 22, "agent"),
        ]
        expected = fold(history)
        assert (expected.status, expected.signed_by, expected.last_event_at) == (
            "delivered",
            "agent",
            T0 + 22 * H,
        )
        assert fold(list(reversed(history))) == expected
        assert fold(history[2:] + history[:2]) == expected

    def test_a_newer_scan_of_an_earlier_stage_moves_the_parcel_but_not_its_status(self) -> None:
        # A refused parcel travelling back is "in transit" again for the carrier.
        track = fold([s("in_transit", 1), s("returning", 10), s("in_transit", 15)])
        assert (track.status, track.status_at, track.last_event_at) == ("returning", T0 + 10 * H, T0 + 15 * H)

    def test_carrier_trouble_comes_and_goes(self) -> None:
        assert fold([s("in_transit", 1), s("exception", 2)]).status == "exception"
        assert fold([s("in_transit", 1), s("exception", 2), s("in_transit", 3)]).status == "in_transit"

    def test_scans_at_the_same_time_settle_on_the_later_stage(self) -> None:
        assert fold([s("out_for_delivery", 5), s("delivered", 5, "recipient")]).status == "delivered"
        assert fold([s("delivered", 5, "recipient"), s("out_for_delivery", 5)]).status == "delivered"

    def test_an_out_for_delivery_scan_is_remembered(self) -> None:
        assert fold([s("out_for_delivery", 1), s("delivered", 2)]).out_for_delivery_seen
        assert not fold([s("in_transit", 1), s("delivered", 2)]).out_for_delivery_seen


class TestIngestOrder:
    async def test_a_late_earlier_scan_joins_the_history_without_moving_the_status_back(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("created", -30 * H), scan("delivered", -2 * H, signed_by="recipient"))
        await w.send(scan("in_transit", -20 * H))
        await w.send(scan("out_for_delivery", -4 * H))
        parcel = await w.parcel()
        assert parcel["status"] == "delivered"
        assert datetime.fromisoformat(parcel["last_event_at"]) == w.clock.now() - 2 * H
        assert [h["status"] for h in parcel["history"]] == [
            "created",
            "in_transit",
            "out_for_delivery",
            "delivered",
        ]

    async def test_a_batch_in_any_order_ends_where_its_latest_scan_says(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("out_for_delivery", -3 * H), scan("picked_up", -9 * H), scan("in_transit", -6 * H))
        parcel = await w.parcel()
        assert (parcel["status"], [h["status"] for h in parcel["history"]]) == (
            "out_for_delivery",
            ["picked_up", "in_transit", "out_for_delivery"],
        )


class TestDuplicates:
    async def test_an_event_sent_again_is_reported_and_ignored(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        first = scan("in_transit", -5 * H)
        assert await w.send(first) == {"accepted": 1, "duplicates": [], "rejected": []}
        changed = {**first, "status": "delivered"}  # the same event id cannot say something else later
        result = await w.send(scan("out_for_delivery", -1 * H), changed, first)
        assert result["accepted"] == 1
        assert result["duplicates"] == [
            {"index": 1, "event_id": first["event_id"]},
            {"index": 2, "event_id": first["event_id"]},
        ]
        assert (await w.parcel())["status"] == "out_for_delivery"
        assert await w.count(ScanRecord) == 2

    async def test_an_event_twice_in_one_batch_counts_once(self, watcher: Watcher) -> None:
        event = scan("in_transit", -1 * H)
        result = await watcher.send(event, event)
        assert (result["accepted"], result["duplicates"]) == (
            1,
            [{"index": 1, "event_id": event["event_id"]}],
        )


class TestIdentity:
    @pytest.mark.parametrize(
        ("field", "value"),
        [("carrier", "YTO"), ("order_id", "o-2"), ("direction", "return"), ("shop_id", "shop-b")],
    )
    async def test_a_scan_that_contradicts_the_parcel_is_rejected(
        self, watcher: Watcher, field: str, value: str
    ) -> None:
        await watcher.send(scan("in_transit", -5 * H))
        response = await watcher.call(
            "POST",
            "/v1/tracking-events",
            "admin",
            json={"events": [scan("delivered", -1 * H, **{field: value})]},
        )
        assert response.status_code == 422, response.text
        assert response.json()["rejected"][0]["errors"][0]["field"] == field
        assert (await watcher.parcel())["status"] == "in_transit"

    async def test_later_scans_may_leave_out_what_is_known_and_fill_in_what_was_not(
        self, watcher: Watcher
    ) -> None:
        await watcher.send(scan("in_transit", -5 * H, order_id=None))
        await watcher.send(scan("delivered", -1 * H, carrier="SF", warehouse_id="WH-HZ", direction=None))
        parcel = await watcher.parcel()
        assert (parcel["order_id"], parcel["warehouse_id"], parcel["direction"]) == (
            "o-1",
            "WH-HZ",
            "outbound",
        )
