"""case-api's reactions to logistics-watcher: a stalled or lost parcel opens a logistics case reported to
the carrier with an SLA (R-NO-UPDATE, R-LOST), escalated when overdue; a delivered parcel starts the 7-day
clock and flags a reship made meanwhile (R-RESHIP); an intercepted parcel lets the refund proceed
(R-RO-SHIPPED). Events come through the embedded bus to the running consumer, and end to end from a
running logistics-watcher."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import contracts
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import CloudEvent, LogisticsAlert, ParcelMilestone, envelope
from case_api.config import Settings
from case_api.models import ReshipOrder
from case_api.reactions.logistics import escalate_overdue
from case_api_testing import NOW, Api, deliver, eventually, running_api
from sqlmodel import select

UNSIGNED = {"signed_at": None}
H = timedelta(hours=1)


def alert(kind: str = "stalled", change: str = "opened", **fields: Any) -> CloudEvent:
    data = LogisticsAlert.model_validate(
        {
            "alert_id": "alr_1",
            "tracking_no": "SF1000001",
            "order_id": "o-1",
            "carrier": "SF",
            "kind": kind,
            "status": "open",
            "opened_at": NOW,
            "shop_id": "shop-a",
            "direction": "outbound",
            "last_event_at": NOW - 25 * H,
            **fields,
        }
    )
    return envelope(
        source="/logistics-watcher",
        type=contracts.ALERT_EVENTS[change].type,
        subject=data.alert_id,
        data=data,
        at=NOW,
    )


def milestone(kind: str, at: datetime = NOW - H, **fields: Any) -> CloudEvent:
    data = ParcelMilestone.model_validate(
        {
            "tracking_no": "SF1000001",
            "order_id": "o-1",
            "carrier": "SF",
            "direction": "outbound",
            "milestone": kind,
            "occurred_at": at,
            **fields,
        }
    )
    return envelope(
        source="/logistics-watcher",
        type=contracts.PARCEL_EVENTS[kind].type,
        subject=data.tracking_no,
        data=data,
        at=NOW,
    )


async def cases(api: Api) -> list[dict[str, Any]]:
    return list((await api.call("GET", "/v1/cases", "support", params={"order_id": "o-1"})).json()["items"])


async def register(api: Api) -> list[dict[str, Any]]:
    body = (await api.call("GET", "/v1/registers/logistics-follow-up", "support")).json()
    return list(body["items"] if isinstance(body, dict) else body)


async def timeline(api: Api, case_id: str) -> list[dict[str, Any]]:
    return list((await api.call("GET", f"/v1/cases/{case_id}/timeline", "support")).json())


class TestTrackingStopped:  # R-NO-UPDATE, R-LOST
    async def test_a_stalled_parcel_opens_a_case_reported_to_the_carrier_with_an_sla(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("stalled"))
        [case] = await cases(api)
        assert (case["reason"], case["remedy"], case["status"], case["stage"]) == (
            "no_tracking_update",
            "reship",
            "awaiting_carrier",
            "shipped",
        )
        [entry] = await register(api)
        assert (entry["case_id"], entry["carrier"], entry["tracking_no"], entry["problem"]) == (
            case["id"],
            "SF",
            "SF1000001",
            "no_tracking_update",
        )
        # Thursday 10:00 + 2 working days (the weekend skipped) = Monday 10:00, Beijing time
        assert datetime.fromisoformat(entry["sla_due_at"]) == datetime.fromisoformat(
            "2026-11-09T10:00:00+08:00"
        )
        entries = await timeline(api, case["id"])
        assert [(e["action"], e["actor"]) for e in entries] == [
            ("open", "logistics-watcher"),
            ("report_to_carrier", "logistics-watcher"),
        ]

    async def test_suspected_loss_is_a_lost_case_and_one_case_is_enough(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("suspected_lost"), alert("stalled"), alert("no_first_scan"))
        [case] = await cases(api)
        assert (case["reason"], case["status"]) == ("lost", "awaiting_carrier")
        assert len(await register(api)) == 1

    async def test_nothing_for_other_findings_unknown_orders_or_return_parcels(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(
            api,
            alert("suspected_false_delivery"),
            alert("stalled", direction="return"),
            alert("stalled", order_id="o-unknown"),
        )
        assert await cases(api) == []

    async def test_a_parcel_already_signed_for_gets_no_loss_case(self, api: Api) -> None:
        await api.put_order()  # signed 2026-11-03: the policy refuses a reship for a lost parcel
        await deliver(api, alert("suspected_lost"))
        assert await cases(api) == []


class TestNotes:
    """Alerts resolved or confirmed and parcels returned inform the order's active cases: a timeline note
    each, no move."""

    @staticmethod
    async def notes(api: Api, case_id: str) -> list[str]:
        return [e["action"] for e in await timeline(api, case_id) if e["action"] in NOTES]

    async def test_a_resolved_stall_and_a_returned_parcel_are_noted_on_the_logistics_case(
        self, api: Api
    ) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("stalled"))
        [case] = await cases(api)
        await deliver(
            api,
            alert("stalled", change="resolved", status="resolved", resolved_at=NOW),
            milestone("returned", direction="return"),
        )
        assert await self.notes(api, case["id"]) == ["logistics_alert_resolved", "parcel_returned"]
        [after] = await cases(api)
        assert (after["status"], after["version"]) == (case["status"], case["version"])

    async def test_a_confirmed_suspicion_is_noted_on_the_false_delivery_case_only(self, api: Api) -> None:
        await api.put_order()
        opened = await api.open_case(remedy="reship", reason="false_delivery")
        assert opened.status_code == 201, opened.text
        other = await api.open_case()
        assert other.status_code == 201, other.text
        confirmed = alert("suspected_false_delivery", change="confirmed", confirmed_at=NOW)
        await deliver(api, confirmed, alert("suspected_false_delivery", change="resolved", status="resolved"))
        assert await self.notes(api, opened.json()["id"]) == [
            "false_delivery_alert_confirmed",
            "logistics_alert_resolved",
        ]
        assert await self.notes(api, other.json()["id"]) == []

    async def test_nothing_for_another_shops_parcel_or_an_unknown_order(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("stalled"))
        [case] = await cases(api)
        await deliver(
            api,
            alert("stalled", change="resolved", shop_id="shop-b"),
            milestone("returned", shop_id="shop-b"),
            milestone("returned", order_id="o-unknown"),
        )
        assert await self.notes(api, case["id"]) == []


NOTES = {"logistics_alert_resolved", "false_delivery_alert_confirmed", "parcel_returned"}


class TestEscalation:  # R-LOST: the carrier answers within the SLA, or it is escalated
    async def test_overdue_answers_are_escalated_once(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("stalled"))
        due = datetime.fromisoformat("2026-11-09T10:00:00+08:00")
        for at, expected in ((due - timedelta(minutes=1), 0), (due, 1), (due + H, 0)):
            async with unit_of_work(api.app.state.sessions) as session:
                assert await escalate_overdue(session, at) == expected
        [entry] = await register(api)
        assert datetime.fromisoformat(entry["escalated_at"]) == due
        [case] = await cases(api)
        assert (await timeline(api, case["id"]))[-1]["action"] == "carrier_sla_escalated"

    async def test_an_answered_carrier_is_not_escalated(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("stalled"))
        [case] = await cases(api)
        verdict = await api.act(
            case, "record_carrier_verdict", confirmed=False, verdict="parcel found, moving"
        )
        assert verdict.status_code == 200, verdict.text
        async with unit_of_work(api.app.state.sessions) as session:
            assert await escalate_overdue(session, NOW + timedelta(days=30)) == 0


class TestDelivered:
    async def test_the_sign_off_starts_the_seven_day_clock(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        before = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        await deliver(api, milestone("delivered", at=datetime.fromisoformat("2026-11-04T15:20:00+08:00")))
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert datetime.fromisoformat(order["signed_at"]) == datetime.fromisoformat(
            "2026-11-04T15:20:00+08:00"
        )
        assert order["version"] == before["version"] + 1
        options = (await api.call("GET", "/v1/orders/o-1/after-sales-options", "storefront")).json()[
            "options"
        ]
        no_reason = next(o for o in options if o["remedy"] == "return_refund" and o["reason"] == "no_reason")
        # R-7D-WINDOW: 00:00 of the day after sign-off + 168 h
        assert datetime.fromisoformat(no_reason["deadline"]) == datetime.fromisoformat(
            "2026-11-12T00:00:00+08:00"
        )

    async def test_a_sign_off_already_known_stays(self, api: Api) -> None:
        await api.put_order()
        await deliver(api, milestone("delivered"))
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert datetime.fromisoformat(order["signed_at"]) == datetime.fromisoformat(
            "2026-11-03T15:20:00+08:00"
        )

    async def test_a_reship_whose_original_parcel_arrives_is_flagged(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        await deliver(api, alert("suspected_lost"))
        [case] = await cases(api)
        case = (
            await api.act(case, "record_carrier_verdict", confirmed=True, verdict="lost in Hangzhou")
        ).json()
        case = (await api.act(case, "approve")).json()
        reshipped = await api.act(case, "create_reship")
        assert reshipped.json()["status"] == "reshipped", reshipped.text
        await deliver(api, milestone("delivered", tracking_no="SF-RESHIP-1"))  # the reship's own parcel
        assert not await self._flagged(api)
        await deliver(api, milestone("delivered"))
        assert await self._flagged(api)
        assert (await timeline(api, case["id"]))[-1]["action"] == "reship_flagged"

    @staticmethod
    async def _flagged(api: Api) -> bool:
        async with api.app.state.sessions() as session:
            return bool((await session.exec(select(ReshipOrder))).one().flagged_for_review)


class TestIntercepted:  # R-RO-SHIPPED: refund when the intercept succeeds, not before
    async def test_the_refund_may_proceed_once_the_parcel_turns_back(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        case = (await api.open_case(remedy="refund_only", reason="no_reason")).json()
        case = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        case = (await api.act(case, "approve")).json()
        case = (await api.act(case, "request_intercept")).json()
        assert case["status"] == "intercepting"
        await deliver(api, milestone("intercepted"))
        case = (await api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert case["status"] == "approved" and case["details"]["intercepted_at"]
        assert (await timeline(api, case["id"]))[-1]["actor"] == "logistics-watcher"
        refunded = await api.act(case, "refund")
        assert (refunded.status_code, refunded.json()["status"]) == (200, "refunded"), refunded.text

    async def test_without_the_milestone_the_refund_waits(self, api: Api) -> None:
        await api.put_order(**UNSIGNED)
        case = (await api.open_case(remedy="refund_only", reason="no_reason")).json()
        case = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        case = (await api.act(case, "approve")).json()
        refused = (await api.act(case, "refund")).json()
        assert (refused["code"], refused["rule"]) == ("policy_refused", "R-RO-SHIPPED")


class TestFromTheWatcher:
    """The watcher and case-api on one embedded event log: scans in, a case out."""

    async def test_a_stalled_parcel_becomes_a_case_and_its_delivery_signs_the_order(
        self, api: Api, tmp_path: Path
    ) -> None:
        from watcher_testing import running_watcher, scan

        await api.put_order(**UNSIGNED)
        assert isinstance(api.bus, EmbeddedBus)
        async with running_watcher(
            tmp_path / "watcher", bus=EmbeddedBus(api.bus.path), background=True
        ) as watcher:
            await watcher.send(scan("picked_up", -30 * H), scan("in_transit", -26 * H))
            assert await watcher.detect() == {"stalled": 1}
            [case] = await eventually(lambda: cases(api))
            assert (case["reason"], case["status"]) == ("no_tracking_update", "awaiting_carrier")
            await watcher.send(
                scan("out_for_delivery", -2 * H), scan("delivered", -1 * H, signed_by="recipient")
            )
            order = await eventually(lambda: _signed(api))
            assert datetime.fromisoformat(order["signed_at"]) == NOW - H


async def _signed(api: Api) -> dict[str, Any] | None:
    order = dict((await api.call("GET", "/v1/orders/o-1", "support")).json())
    return order if order["signed_at"] else None


class TestEscalationJob:
    async def test_the_running_app_escalates_overdue_answers_by_itself(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path, escalation_interval_seconds=0.05)
        async for api in running_api(settings, tmp_path):
            await api.put_order(**UNSIGNED)
            await deliver(api, alert("stalled"))
            api.clock.set(datetime.fromisoformat("2026-11-09T10:00:00+08:00"))
            for _ in range(100):
                [entry] = await register(api)
                if entry["escalated_at"]:
                    break
                await asyncio.sleep(0.05)
            assert entry["escalated_at"] is not None


class TestAParcelOfTheOrdersShop:
    """Issue 11, item 1: a parcel event acts only on an order of its own shop, and a sign-off is never
    dated before the order was paid or shipped, nor moved once set."""

    @staticmethod
    async def intercepting(api: Api) -> dict[str, Any]:
        await api.put_order(**UNSIGNED)
        case = (await api.open_case(remedy="refund_only", reason="no_reason")).json()
        case = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        case = (await api.act(case, "approve")).json()
        return dict((await api.act(case, "request_intercept")).json())

    async def test_another_shops_intercept_is_ignored(self, any_db_api: Api, caplog: Any) -> None:
        case = await self.intercepting(any_db_api)
        await deliver(any_db_api, milestone("intercepted", shop_id="shop-b"))
        case = (await any_db_api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert case["status"] == "intercepting"
        refused = (await any_db_api.act(case, "refund")).json()
        assert (refused["status"], refused["case_status"]) == (409, "intercepting")  # no refund yet
        assert any(
            r.levelname == "WARNING" and "intercept of a parcel of shop shop-b" in r.getMessage()
            for r in caplog.records
        )
        await deliver(any_db_api, milestone("intercepted", shop_id="shop-a"))
        case = (await any_db_api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert case["status"] == "approved"

    async def test_another_shops_sign_off_and_alerts_are_ignored(self, any_db_api: Api) -> None:
        await any_db_api.put_order(**UNSIGNED)
        await deliver(
            any_db_api,
            milestone("delivered", shop_id="shop-b"),
            alert("stalled", shop_id="shop-b"),
            alert("suspected_lost", shop_id="shop-b"),
        )
        assert (await any_db_api.call("GET", "/v1/orders/o-1", "support")).json()["signed_at"] is None
        assert await cases(any_db_api) == []

    async def test_an_event_without_a_shop_is_applied(self, api: Api) -> None:
        """From a parcel whose events never named a shop: only the bus or a key for all shops sends those."""
        await api.put_order(**UNSIGNED)
        await deliver(api, milestone("delivered", shop_id=None))
        assert await _signed(api)

    @pytest.mark.parametrize(
        "at",
        [
            NOW - timedelta(days=30),  # before the order was even paid (2026-11-01 10:00)
            datetime.fromisoformat("2026-11-02T08:59:00+08:00"),  # paid, but before it shipped at 09:00
        ],
    )
    async def test_a_sign_off_before_payment_or_shipment_is_ignored(
        self, any_db_api: Api, at: datetime
    ) -> None:
        await any_db_api.put_order(**UNSIGNED)
        await deliver(any_db_api, milestone("delivered", at=at, shop_id="shop-a"))
        order = (await any_db_api.call("GET", "/v1/orders/o-1", "support")).json()
        assert order["signed_at"] is None
        no_reason = await self.no_reason_return(any_db_api)  # not refused R-BEYOND-7D: not signed yet
        assert (no_reason["eligible"], no_reason["deadline"]) == (True, None), no_reason

    async def test_a_sign_off_never_moves_backwards(self, any_db_api: Api) -> None:
        await any_db_api.put_order()  # signed 2026-11-03 15:20
        before = (await any_db_api.call("GET", "/v1/orders/o-1", "support")).json()
        earlier = datetime.fromisoformat("2026-11-02T12:00:00+08:00")  # after shipment, before the sign-off
        await deliver(any_db_api, milestone("delivered", at=earlier, shop_id="shop-a"))
        order = (await any_db_api.call("GET", "/v1/orders/o-1", "support")).json()
        assert (order["signed_at"], order["version"]) == (before["signed_at"], before["version"])

    @staticmethod
    async def no_reason_return(api: Api) -> dict[str, Any]:
        options = (await api.call("GET", "/v1/orders/o-1/after-sales-options", "storefront")).json()[
            "options"
        ]
        return dict(next(o for o in options if o["remedy"] == "return_refund" and o["reason"] == "no_reason"))

    async def test_the_attack_through_the_watcher(self, api: Api, tmp_path: Path) -> None:
        """A warehouse key of shop-a turns back and backdates the sign-off of a shop-b parcel: both refused,
        and shop-b's intercept, refund and 7-day window stay as they were."""
        from logistics_watcher.models import InterceptRequest
        from watcher_testing import running_watcher, scan

        await api.put_order("o-b", who="storefront_b", shop_id="shop-b", **UNSIGNED)
        case = (await api.open_case("storefront_b", order_id="o-b", remedy="refund_only")).json()
        case = (
            await api.act(case, "record_retention", "support_b", offer="coupon", outcome="declined")
        ).json()
        case = (await api.act(case, "approve", "support_b")).json()
        case = (await api.act(case, "request_intercept", "support_b")).json()
        assert case["status"] == "intercepting"
        assert isinstance(api.bus, EmbeddedBus)
        async with running_watcher(tmp_path / "watcher", bus=EmbeddedBus(api.bus.path), background=True) as w:
            shop_b = scan("picked_up", -30 * H, tracking_no="SFB1", order_id="o-b", shop_id="shop-b")
            assert (await w.send(shop_b, who="admin"))["accepted"] == 1

            async def intercept_known() -> bool:
                async with w.app.state.sessions() as session:
                    return bool((await session.exec(select(InterceptRequest))).all())

            await eventually(intercept_known)
            attacks = [
                scan("returning", -1 * H, tracking_no="SFB1", order_id="o-b"),
                scan("returning", -1 * H, tracking_no="SFA1", order_id="o-b"),  # a parcel of its own
                scan("delivered", -30 * 24 * H, tracking_no="SFB1", order_id="o-b", signed_by="recipient"),
            ]
            for attack in attacks:
                response = await w.call("POST", "/v1/tracking-events", "warehouse", json={"events": [attack]})
                assert response.status_code == 422, response.text
            # Shop-b's own parcel turning back still confirms the intercept, and only then.
            case = (await api.call("GET", f"/v1/cases/{case['id']}", "support_b")).json()
            assert case["status"] == "intercepting"
            await w.send(
                scan("returning", -1 * H, tracking_no="SFB1", order_id="o-b", shop_id="shop-b"), who="admin"
            )

            async def approved() -> dict[str, Any] | None:
                now = (await api.call("GET", f"/v1/cases/{case['id']}", "support_b")).json()
                return now if now["status"] == "approved" else None

            await eventually(approved)
        order = (await api.call("GET", "/v1/orders/o-b", "support_b")).json()
        assert order["signed_at"] is None
