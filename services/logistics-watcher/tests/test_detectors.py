"""The detectors at their thresholds, per carrier, one open alert per parcel and kind, and resolution when the
parcel moves again (POLICY.md R-NO-UPDATE, R-LOST, R-FALSE-DELIVERY)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aftersales_shared.db import unit_of_work
from logistics_watcher.models import Alert
from sqlalchemy.exc import IntegrityError
from watcher_testing import Watcher, scan, watcher_on

H = timedelta(hours=1)
JUST_UNDER = timedelta(hours=23, minutes=59)
JUST_OVER = timedelta(hours=24, minutes=1)


class TestNoFirstScan:  # R-NO-UPDATE
    async def test_shipped_without_a_carrier_scan_for_more_than_a_day(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("created", timedelta(0)))
        assert await w.detect(after=JUST_UNDER) == {}
        assert await w.detect(after=JUST_OVER - JUST_UNDER) == {"no_first_scan": 1}
        assert await w.open_kinds() == ["no_first_scan"]

    async def test_the_first_carrier_scan_resolves_it(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("created", timedelta(0)))
        await w.detect(after=JUST_OVER)
        await w.send(scan("picked_up", w.clock.now()))
        assert await w.open_kinds() == []
        resolved = await w.alerts(kind="no_first_scan", status="resolved")
        assert resolved[0]["resolved_at"] is not None


class TestStalled:  # R-NO-UPDATE
    @pytest.mark.parametrize(
        "status", ["picked_up", "in_transit", "out_for_delivery", "delivery_failed", "returning"]
    )
    async def test_no_scan_for_more_than_a_day(self, any_db_watcher: Watcher, status: str) -> None:
        w = any_db_watcher
        await w.send(scan(status, timedelta(0)))
        assert await w.detect(after=JUST_UNDER) == {}
        assert await w.detect(after=JUST_OVER - JUST_UNDER) == {"stalled": 1}

    @pytest.mark.parametrize("status", ["delivered", "returned", "created"])
    async def test_parcels_at_rest_do_not_stall(self, watcher: Watcher, status: str) -> None:
        earlier = [scan("out_for_delivery", -1 * H)] if status == "delivered" else []
        await watcher.send(*earlier, scan(status, timedelta(0), signed_by="recipient"))
        assert "stalled" not in await watcher.detect(after=10 * JUST_OVER)


class TestSuspectedLost:  # R-LOST
    async def test_stalled_beyond_three_days(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        assert await w.detect(after=timedelta(hours=71, minutes=59)) == {"stalled": 1}
        assert await w.detect(after=timedelta(minutes=2)) == {"suspected_lost": 1}
        assert await w.open_kinds() == ["stalled", "suspected_lost"]

    @pytest.mark.parametrize(
        "event",
        [{"status": "exception"}, {"status": "lost"}, {"carrier_format": "kuaidi100", "carrier_status": "2"}],
    )  # 疑难
    async def test_a_carrier_lost_or_problem_status_at_once(
        self, any_db_watcher: Watcher, event: dict[str, str]
    ) -> None:
        w = any_db_watcher
        body = {k: v for k, v in scan(at=-1 * H).items() if k != "status"} | event
        await w.send(scan("in_transit", -5 * H), body)
        assert await w.detect() == {"suspected_lost": 1}

    async def test_a_problem_status_keeps_it_open_and_movement_resolves_it(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("exception", -1 * H))
        await w.detect()
        await w.send(scan("exception", timedelta(0)))  # the carrier repeats the problem
        assert await w.open_kinds() == ["suspected_lost"]
        await w.send(scan("in_transit", timedelta(minutes=5)))  # ahead, within the clocks' tolerance
        assert await w.open_kinds() == []


class TestPerCarrierThresholds:
    async def test_each_carrier_its_own_thresholds(self, db: str, tmp_path: Path) -> None:
        overrides = {"EMS": {"stalled": "PT48H", "no_first_scan": "PT12H"}, "JD": {"suspected_lost": "P2D"}}
        async with watcher_on(db, tmp_path, carrier_thresholds=overrides) as w:
            await w.send(
                scan("in_transit", timedelta(0), tracking_no="SF1", carrier="SF"),
                scan("in_transit", timedelta(0), tracking_no="EMS1", carrier="EMS"),
                scan("created", timedelta(0), tracking_no="EMS2", carrier="EMS"),
                scan("in_transit", timedelta(0), tracking_no="JD1", carrier="JD"),
            )
            assert await w.detect(after=timedelta(hours=12, minutes=1)) == {"no_first_scan": 1}  # EMS2
            assert await w.detect(after=JUST_OVER - timedelta(hours=12, minutes=1)) == {
                "stalled": 2
            }  # SF1, JD1
            assert await w.open_kinds("EMS1") == []
            assert await w.detect(after=timedelta(hours=24)) == {
                "stalled": 1,
                "suspected_lost": 1,
            }  # EMS1, JD1
            assert await w.open_kinds("EMS1") == ["stalled"]
            assert await w.open_kinds("JD1") == ["stalled", "suspected_lost"]
            assert await w.open_kinds("SF1") == ["stalled"]

    def test_settings_read_durations_and_fall_back_to_the_defaults(self, tmp_path: Path) -> None:
        from logistics_watcher.config import Settings

        settings = Settings(
            data_dir=tmp_path,
            thresholds={"stalled": "PT30H"},
            carrier_thresholds={"EMS": {"suspected_lost": 432000}},
        )
        ems = settings.thresholds_for("EMS")
        assert (ems.stalled, ems.suspected_lost, ems.no_first_scan) == (30 * H, 120 * H, 24 * H)
        assert settings.thresholds_for("SF").suspected_lost == 72 * H


class TestFalseDelivery:  # R-FALSE-DELIVERY
    @pytest.mark.parametrize(
        ("signed_by", "out_for_delivery", "score"),
        [
            ("agent", True, 0.5),
            ("locker", True, 0.4),
            ("station", True, 0.4),
            ("other", True, 0.6),
            ("recipient", False, 0.4),
            ("agent", False, 0.9),
            ("other", False, 1.0),
        ],
    )
    async def test_signed_by_someone_else_or_without_delivery_scan(
        self, any_db_watcher: Watcher, signed_by: str, out_for_delivery: bool, score: float
    ) -> None:
        w = any_db_watcher
        events = [scan("in_transit", -5 * H), scan("delivered", -1 * H, signed_by=signed_by)]
        if out_for_delivery:
            events.append(scan("out_for_delivery", -3 * H))
        await w.send(*events)
        assert await w.detect() == {"suspected_false_delivery": 1}
        [alert] = await w.alerts(kind="suspected_false_delivery")
        assert alert["score"] == score

    async def test_signed_by_the_recipient_after_a_delivery_scan_is_fine(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("out_for_delivery", -3 * H), scan("delivered", -1 * H, signed_by="recipient"))
        assert await w.detect() == {}

    async def test_return_parcels_are_not_suspected(self, watcher: Watcher) -> None:
        await watcher.send(scan("delivered", -1 * H, direction="return", signed_by="agent"))
        assert await watcher.detect() == {}

    async def test_a_late_delivery_scan_clears_the_suspicion(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", -5 * H), scan("delivered", -1 * H, signed_by="recipient"))
        await w.detect()
        await w.send(scan("out_for_delivery", -3 * H))  # arrives late, placed before the sign-off
        assert await w.open_kinds() == []
        assert (await w.parcel())["false_delivery_score"] is None


class TestOneOpenAlertPerParcelAndKind:
    async def test_running_again_opens_nothing_new(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        assert await w.detect(after=JUST_OVER) == {"stalled": 1}
        assert await w.detect() == {}
        assert await w.detect(after=H) == {}
        assert len(await w.alerts()) == 1

    async def test_the_database_refuses_a_second_open_alert(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        await w.detect(after=JUST_OVER)
        [alert] = await w.alerts()
        copy = {**alert, "id": "alr_copy"}
        with pytest.raises(IntegrityError):
            async with unit_of_work(w.app.state.sessions) as session:
                session.add(Alert.model_validate(copy))
        async with unit_of_work(w.app.state.sessions) as session:  # a resolved one may sit beside it
            session.add(Alert.model_validate({**copy, "status": "resolved"}))


class TestResolution:
    async def test_a_stalled_parcel_that_moves_again_resolves_and_may_stall_again(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        await w.detect(after=JUST_OVER)
        await w.send(scan("in_transit", w.clock.now()))
        assert await w.open_kinds() == []
        assert await w.detect(after=JUST_UNDER) == {}
        assert await w.detect(after=2 * timedelta(minutes=1)) == {"stalled": 1}
        assert sorted(a["status"] for a in await w.alerts()) == ["open", "resolved"]
        types = [e.type for e in await w.published("logistics.alert.")]
        assert types == [
            "logistics.alert.opened.v1",
            "logistics.alert.resolved.v1",
            "logistics.alert.opened.v1",
        ]

    async def test_a_late_old_scan_is_not_movement(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        await w.detect(after=JUST_OVER)
        await w.send(scan("picked_up", -5 * H))
        assert await w.open_kinds() == ["stalled"]

    async def test_delivery_resolves_every_alert_about_silence(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        await w.detect(after=timedelta(hours=80))
        await w.send(
            scan("out_for_delivery", w.clock.now() - H),
            scan("delivered", w.clock.now(), signed_by="recipient"),
        )
        assert await w.open_kinds() == []


class TestEvents:
    async def test_findings_go_out_keyed_by_tracking_number(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", timedelta(0)))
        await w.detect(after=JUST_OVER)
        [event] = await w.published("logistics.alert.")
        assert (event.type, event.source, event.data["kind"], event.data["status"]) == (
            "logistics.alert.opened.v1",
            "/logistics-watcher",
            "stalled",
            "open",
        )
        assert (event.data["tracking_no"], event.data["order_id"], event.data["shop_id"]) == (
            "SF1000001",
            "o-1",
            "shop-a",
        )
        async with w.app.state.sessions() as session:
            from aftersales_shared.outbox import OutboxMessage
            from sqlmodel import select

            row = (await session.exec(select(OutboxMessage))).one()
        assert (row.topic, row.key) == ("logistics.alerts.v1", "SF1000001")


class TestBacklog:
    async def test_worked_off_in_passes_of_a_bounded_size(self, db: str, tmp_path: Path) -> None:
        async with watcher_on(db, tmp_path, max_alerts_per_pass=2) as w:
            await w.send(
                *[scan("in_transit", -30 * H, tracking_no=f"SF{i}") for i in range(5)],
                *[scan("exception", -1 * H, tracking_no=f"EX{i}") for i in range(2)],
            )
            assert await w.detect() == {"stalled": 5, "suspected_lost": 2}
            assert await w.detect() == {}
            assert len({e.data["tracking_no"] for e in await w.published("logistics.alert.opened")}) == 7
