"""Milestones on logistics.parcels.v1: delivered, returned, and intercepted after case-api asked for it
(R-RO-SHIPPED); a report of non-receipt confirms a suspected false delivery (R-FALSE-DELIVERY)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aftersales_shared.db import unit_of_work
from logistics_watcher import handlers
from watcher_testing import Watcher, scan

H = timedelta(hours=1)


async def request_intercept(w: Watcher, order_id: str = "o-1", shop_id: str | None = "shop-a") -> None:
    async with unit_of_work(w.app.state.sessions) as session:
        await handlers.request_intercept(
            session, case_id="case_1", order_id=order_id, shop_id=shop_id, now=w.clock.now()
        )


async def report_non_receipt(w: Watcher, order_id: str = "o-1") -> int:
    async with unit_of_work(w.app.state.sessions) as session:
        return await handlers.report_non_receipt(session, order_id=order_id, now=w.clock.now())


async def milestones(w: Watcher) -> list[tuple[str, str]]:
    return [(e.data["milestone"], e.data["tracking_no"]) for e in await w.published("logistics.parcel.")]


class TestDelivered:
    async def test_reported_once_with_who_signed(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("out_for_delivery", -3 * H), scan("delivered", -2 * H, signed_by="agent"))
        await w.send(scan("delivered", -1 * H, signed_by="agent"))  # the carrier says it again
        [event] = await w.published("logistics.parcel.")
        assert (event.type, event.data["direction"], event.data["signed_by"], event.data["order_id"]) == (
            "logistics.parcel.delivered.v1",
            "outbound",
            "agent",
            "o-1",
        )
        assert event.data["occurred_at"].startswith("2026-11-05T00:00:00")  # 10:00+08:00 - 2 h, in UTC

    async def test_a_late_earlier_sign_off_is_not_reported_twice(self, watcher: Watcher) -> None:
        await watcher.send(scan("delivered", -1 * H, signed_by="recipient"))
        await watcher.send(scan("delivered", -2 * H, signed_by="recipient"))
        assert await milestones(watcher) == [("delivered", "SF1000001")]


class TestReturned:
    async def test_a_return_parcel_received_by_the_warehouse(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(
            scan("picked_up", -30 * H, tracking_no="RT1", direction="return"),
            scan("in_transit", -20 * H, tracking_no="RT1"),
        )
        assert await milestones(w) == []
        await w.send(scan("delivered", -1 * H, tracking_no="RT1", signed_by="other"))
        assert await milestones(w) == [("returned", "RT1")]
        assert await w.detect() == {}  # a return parcel signed by the warehouse is no false delivery

    async def test_an_outbound_parcel_back_at_the_sender(self, watcher: Watcher) -> None:
        await watcher.send(scan("returning", -5 * H), scan("returned", -1 * H))
        assert await milestones(watcher) == [("returned", "SF1000001")]


class TestIntercepts:  # R-RO-SHIPPED
    async def test_reported_when_the_parcel_turns_back_after_the_request(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", -5 * H))
        await request_intercept(w)
        await w.send(scan("out_for_delivery", -4 * H))
        assert await milestones(w) == []
        await w.send(scan("returning", -1 * H, carrier_format="kuaidi100", carrier_status="14"))  # 拒签
        assert await milestones(w) == [("intercepted", "SF1000001")]
        await w.send(scan("returned", timedelta(0)))
        assert await milestones(w) == [("intercepted", "SF1000001"), ("returned", "SF1000001")]

    async def test_reported_at_once_when_the_parcel_is_already_on_its_way_back(
        self, watcher: Watcher
    ) -> None:
        await watcher.send(scan("returning", -1 * H))
        await request_intercept(watcher)
        assert await milestones(watcher) == [("intercepted", "SF1000001")]

    async def test_a_request_before_the_first_scan_waits_for_the_parcel(self, watcher: Watcher) -> None:
        await request_intercept(watcher)
        await watcher.send(scan("in_transit", -3 * H), scan("returning", -1 * H))
        assert await milestones(watcher) == [("intercepted", "SF1000001")]

    async def test_a_request_and_the_parcel_turning_back_at_the_same_moment(
        self, any_db_watcher: Watcher
    ) -> None:
        """Each transaction would miss the other's uncommitted write: exactly one of them must report it."""
        w = any_db_watcher
        orders = [f"o-{n}" for n in range(12)]
        await w.send(
            *(scan("in_transit", -5 * H, tracking_no=f"SF{n}", order_id=o) for n, o in enumerate(orders))
        )

        async def turn_back(n: int, order_id: str) -> None:
            async with unit_of_work(w.app.state.sessions) as session:
                await handlers.ingest(
                    session,
                    [scan("returning", -1 * H, tracking_no=f"SF{n}", order_id=order_id)],
                    settings=w.app.state.settings,
                    now=w.clock.now(),
                )

        await asyncio.gather(
            *(turn_back(n, o) for n, o in enumerate(orders)), *(request_intercept(w, o) for o in orders)
        )
        assert sorted(await milestones(w)) == sorted(("intercepted", f"SF{n}") for n in range(len(orders)))

    async def test_only_the_orders_parcel(self, watcher: Watcher) -> None:
        await request_intercept(watcher, order_id="o-2")
        await watcher.send(scan("returning", -1 * H))
        await watcher.send(scan("returning", -1 * H, tracking_no="RT9", direction="return", order_id="o-2"))
        assert await milestones(watcher) == []


class TestNonReceipt:  # R-FALSE-DELIVERY
    async def test_confirms_the_suspicion_which_then_stays_open(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("in_transit", -5 * H), scan("delivered", -1 * H, signed_by="station"))
        await w.detect()
        assert await report_non_receipt(w) == 1
        [alert] = await w.alerts(kind="suspected_false_delivery")
        assert alert["confirmed_at"] is not None and alert["status"] == "open"
        assert [e.type for e in await w.published("logistics.alert.")][-1] == "logistics.alert.confirmed.v1"
        await w.send(scan("out_for_delivery", -2 * H))  # would clear an unconfirmed suspicion
        assert await w.open_kinds() == ["suspected_false_delivery"]

    async def test_nothing_to_confirm(self, watcher: Watcher) -> None:
        await watcher.send(scan("out_for_delivery", -2 * H), scan("delivered", -1 * H, signed_by="recipient"))
        assert await report_non_receipt(watcher) == 0
