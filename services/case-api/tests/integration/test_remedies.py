"""One path per remedy, end to end over HTTP, checked through the case, the timeline and the order."""

from __future__ import annotations

import json
from typing import Any

from aftersales_shared import topics
from case_api.models import ReshipOrder
from case_api_checks import assert_problem, outbox_rows, unchanged, upload
from case_api_testing import MP4, Api, deliver_payout, image, order_body
from sqlmodel import select

Case = dict[str, Any]


async def move(api: Api, case: Case, action: str, who: str = "support", **body: Any) -> Case:
    response = await api.act(case, action, who, **body)
    assert response.status_code == 200, f"{action}: {response.text}"
    moved = dict(response.json())
    assert moved["version"] == case["version"] + 1
    return moved


async def opened(api: Api, who: str = "storefront", **fields: Any) -> Case:
    response = await api.open_case(who, **fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def timeline(api: Api, case: Case) -> list[dict[str, Any]]:
    response = await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")
    assert response.status_code == 200, response.text
    return list(response.json())


async def line(api: Api, line_id: str = "L1", order_id: str = "o-1") -> dict[str, Any]:
    order = (await api.call("GET", f"/v1/orders/{order_id}", "support")).json()
    return dict(next(li for li in order["lines"] if li["line_id"] == line_id))


def path_of(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action"], e["to_status"]) for e in entries]


class TestRefundOnlyUnshipped:
    async def test_retention_declined_then_approve_cancels_the_shipment_and_refunds(self, api: Api) -> None:
        await api.put_order(shipment=None, signed_at=None)
        case = await opened(api, remedy="refund_only", reason="no_reason", description="拍错了")
        assert (case["status"], case["stage"], case["amount"]) == ("retention", "unshipped", "119.00")
        case = await move(
            api, case, "record_retention", offer="coupon", outcome="declined", real_reason="拍错颜色"
        )
        case = await move(api, case, "approve")
        assert case["status"] == "approved"
        case = await move(api, case, "refund")
        assert (case["status"], case["details"]["refunded_amount"]) == ("refunded", "119.00")

        entries = await timeline(api, case)
        assert path_of(entries) == [
            ("open", "retention"),
            ("record_retention", "open"),
            ("approve", "approved"),
            ("refund", "refunded"),
        ]
        assert entries[2]["data"]["cancel_shipment"] is True  # R-RO-UNSHIPPED: the warehouse cancels it
        approved = [
            json.loads(r.payload)
            for r in await outbox_rows(api, topics.CASES)
            if json.loads(r.payload)["type"] == "aftersales.case.approved.v1"
        ]
        assert [e["data"]["data"]["cancel_shipment"] for e in approved] == [True]
        assert (await line(api))["compensated"] == "119.00"

    async def test_retained_the_order_keeps_shipping(self, api: Api) -> None:
        await api.put_order(shipment=None, signed_at=None)
        case = await opened(api, remedy="refund_only", reason="no_reason")
        case = await move(api, case, "record_retention", offer="gift", outcome="accepted")
        assert case["status"] == "retained"
        assert (await line(api))["compensated"] == "0.00"
        assert (await line(api))[
            "remaining_allowance"
        ] == "238.00"  # a retained case releases its reservation


class TestRefundOnlyShippedNotReceived:
    async def test_refund_only_after_the_intercept_is_confirmed(self, api: Api) -> None:
        await api.put_order(signed_at=None)
        case = await opened(api, remedy="refund_only", reason="no_reason")
        assert (case["status"], case["stage"]) == ("retention", "shipped")
        case = await move(api, case, "record_retention", offer="other_style", outcome="declined")
        case = await move(api, case, "approve")
        async with unchanged(api):
            early = await api.act(case, "refund")
        problem = assert_problem(early, 422, "policy_refused")
        assert problem["rule"] == "R-RO-SHIPPED" and problem["message_zh"] and problem["message_en"]
        case = await move(api, case, "request_intercept", notes="请快递拦截，客户拒收")
        assert case["status"] == "intercepting"
        async with unchanged(api):
            assert_problem(await api.act(case, "refund"), 409, "invalid_transition")
        case = await move(api, case, "confirm_intercept", "warehouse")
        assert (case["status"], "intercepted_at" in case["details"]) == ("approved", True)
        case = await move(api, case, "refund")
        assert case["status"] == "refunded"
        assert path_of(await timeline(api, case)) == [
            ("open", "retention"),
            ("record_retention", "open"),
            ("approve", "approved"),
            ("request_intercept", "intercepting"),
            ("confirm_intercept", "approved"),
            ("refund", "refunded"),
        ]
        actors = [e["actor"] for e in await timeline(api, case)]
        assert actors == ["storefront", "support", "support", "support", "warehouse", "support"]


class TestExchange:
    async def test_approve_return_inspect_exchange_and_only_once(self, api: Api) -> None:
        await api.put_order()
        case = await opened(api, remedy="exchange", reason="no_reason", description="想换L码")
        assert (case["status"], case["amount"]) == ("retention", None)
        case = await move(api, case, "record_retention", offer="none", outcome="declined")
        case = await move(api, case, "approve")
        assert case["status"] == "awaiting_return"
        approve = (await timeline(api, case))[-1]
        assert approve["data"]["return_notice"]["ship_back_within_days"] == 7  # R-RETURN-NOTICE
        case = await move(
            api, case, "submit_return_tracking", "storefront", carrier="YTO", tracking_no="YT0001"
        )
        assert case["details"]["return_parcel"]["tracking_no"] == "YT0001"
        case = await move(api, case, "record_receipt", "warehouse")
        case = await move(api, case, "record_inspection", "warehouse", passed=True, notes="吊牌完好")
        assert case["status"] == "exchanged"
        assert [e["to_status"] for e in await timeline(api, case)] == [
            "retention",
            "open",
            "awaiting_return",
            "awaiting_return",
            "return_received",
            "exchanged",
        ]
        assert (await line(api))["compensated"] == "0.00"  # an exchange moves no money

        async with unchanged(api):
            again = await api.open_case(remedy="exchange", reason="no_reason")
        problem = assert_problem(again, 422, "policy_refused")
        assert problem["rule"] == "R-EXCHANGE-ONCE"
        assert problem["message_zh"] and problem["message_en"]
        other_line = await api.open_case(
            remedy="exchange", reason="no_reason", lines=[{"line_id": "L2", "quantity": 1}]
        )
        assert other_line.status_code == 201, other_line.text

    async def test_refund_is_not_how_an_exchange_settles(self, api: Api) -> None:
        await api.put_order()
        case = await opened(api, remedy="exchange", reason="no_reason")
        case = await move(api, case, "record_retention", offer="none", outcome="declined")
        case = await move(api, case, "approve")
        case = await move(api, case, "record_receipt", "warehouse")
        case = await move(api, case, "record_inspection", "warehouse", passed=True)
        async with unchanged(api):
            assert_problem(await api.act(case, "refund"), 409)


class TestReshipDamaged:
    async def test_evidence_first_then_approve_and_reship_counted_against_the_cap(self, api: Api) -> None:
        await api.put_order()
        first = await upload(api, image(1))
        case = await opened(
            api, remedy="reship", reason="damaged", evidence_ids=[first], description="外箱压坏"
        )
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 2)
        async with unchanged(api):
            assert_problem(await api.act(case, "approve"), 409, "invalid_transition")
        case = await move(
            api, case, "attach_evidence", "storefront", evidence_ids=[await upload(api, image(2))]
        )
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 1)
        case = await move(
            api, case, "attach_evidence", "storefront", evidence_ids=[await upload(api, image(3))]
        )
        assert (case["status"], case["evidence_missing"]) == ("open", 0)
        assert len(case["evidence"]) == 3
        case = await move(api, case, "approve")
        case = await move(api, case, "create_reship", notes="补发同款")
        assert case["status"] == "reshipped"

        reship = (await timeline(api, case))[-1]
        assert reship["data"]["lines"] == [
            {
                "line_id": "L1",
                "quantity": 1,
                "sku": "TEE-M-BLK",
                "name": "纯棉T恤",
                "size": "M",
                "color": "black",
            }
        ]
        assert reship["data"]["original_tracking_no"] == "SF1000001"
        async with api.app.state.sessions() as session:
            (row,) = (await session.exec(select(ReshipOrder).where(ReshipOrder.case_id == case["id"]))).all()
        assert (row.id, str(row.value)) == (reship["data"]["reship_order_id"], "119.00")
        assert ((await line(api))["compensated"], (await line(api))["remaining_allowance"]) == (
            "119.00",
            "119.00",
        )
        async with unchanged(api):
            over = await api.call(
                "POST",
                "/v1/cashback-tasks",
                "support",
                json={
                    "order_id": "o-1",
                    "line_id": "L1",
                    "reason": "other",
                    "amount": "119.01",
                    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
                },
            )
        assert assert_problem(over, 422, "policy_refused")["rule"] == "R-COMP-CAP"

    async def test_one_photo_sent_three_times_is_one_photo(self, api: Api) -> None:
        await api.put_order()
        photo = await upload(api, image(1))
        copies = [await upload(api, image(2)) for _ in range(3)]  # the same bytes, three uploads
        case = await opened(api, remedy="reship", reason="damaged", evidence_ids=[photo, photo, photo])
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 2)
        case = await move(api, case, "attach_evidence", "storefront", evidence_ids=copies)
        assert (case["status"], case["evidence_missing"]) == ("awaiting_evidence", 1)

    async def test_a_video_is_enough_evidence(self, api: Api) -> None:
        await api.put_order()
        clip = await upload(api, MP4, name="clip.mp4", content_type="video/mp4")
        case = await opened(api, remedy="reship", reason="damaged", evidence_ids=[clip])
        assert (case["status"], case["evidence_missing"]) == ("open", 0)


async def approved_price_protection(api: Api) -> tuple[dict[str, Any], str]:
    """o-1's L1 (2 × 129.00) claimed against o-2 at 99.00 and approved: the case and its cashback task."""
    await api.put_order()  # L1: 2 × 129.00, paid 2026-11-01
    new = order_body(
        paid_at="2026-11-04T20:00:00+08:00",
        shipment=None,
        signed_at=None,
        lines=[{**order_body()["lines"][0], "unit_price": "99.00", "paid_amount": "198.00"}],
    )
    await api.put_order("o-2", **{k: v for k, v in new.items() if k != "shop_id"})
    case = await opened(
        api,
        "support",
        remedy="price_protection",
        reason="price_drop",
        lines=[{"line_id": "L1", "quantity": 2}],
        new_order_id="o-2",
        new_unit_price="99.00",
    )
    assert (case["status"], case["amount"], case["details"]["new_order_id"]) == ("open", "60.00", "o-2")
    case = await move(api, case, "approve")
    assert case["status"] == "approved"
    return case, (await timeline(api, case))[-1]["data"]["cashback_task_id"]


class TestPriceProtection:
    async def test_a_cheaper_new_order_becomes_an_approved_cashback_task(self, api: Api) -> None:
        case, task_id = await approved_price_protection(api)
        tasks = (
            await api.call("GET", "/v1/cashback-tasks", "support", params={"case_id": case["id"]})
        ).json()
        (task,) = tasks["items"]
        assert (task["id"], task["status"], task["amount"], task["reason"]) == (
            task_id,
            "approved",
            "60.00",
            "price_difference",
        )
        assert task["payee"] == {"alipay_account": "zhangsan@example.com", "name": "张三"}
        events = [json.loads(r.payload) for r in await outbox_rows(api, topics.CASHBACK)]
        assert [(e["type"], e["subject"]) for e in events] == [("aftersales.cashback.approved.v1", task_id)]
        assert (await line(api))["compensated"] == "60.00"

    async def test_a_failed_payout_sends_the_case_back_to_support_and_says_so(self, api: Api) -> None:
        case, task_id = await approved_price_protection(api)
        task = (await api.call("GET", f"/v1/cashback-tasks/{task_id}", "support")).json()
        await deliver_payout(api, task, "failed", failure_code="PAYEE_NOT_EXIST")
        assert (await api.call("GET", f"/v1/cashback-tasks/{task_id}", "support")).json()[
            "status"
        ] == "failed"
        case = (await api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert case["status"] == "open"  # to be approved again (a new task) or rejected
        assert (await timeline(api, case))[-1]["action"] == "payout_failed"
        events = [json.loads(r.payload) for r in await outbox_rows(api, topics.CASES)]
        assert events[-1]["type"] == "aftersales.case.payout_failed.v1"
        assert (await line(api))["compensated"] == "60.00"  # still promised, by the case

    async def test_another_buyers_order_or_a_wrong_price_is_refused(self, api: Api) -> None:
        await api.put_order()
        lines = [{**order_body()["lines"][0], "unit_price": "99.00", "paid_amount": "99.00", "quantity": 1}]
        await api.put_order("o-3", buyer={"id": "buyer-9", "name": "王五"}, lines=lines)
        await api.put_order("o-4", lines=lines)
        for new_order_id, price in (("o-3", None), ("o-4", "89.00")):
            async with unchanged(api):
                response = await api.open_case(
                    remedy="price_protection",
                    reason="price_drop",
                    new_order_id=new_order_id,
                    new_unit_price=price,
                )
            assert assert_problem(response, 422, "policy_refused")["rule"] == "R-PRICE-PROTECT"


class TestLost:
    async def test_carrier_confirms_then_reship(self, api: Api) -> None:
        await api.put_order(signed_at=None)
        case = await opened(api, remedy="reship", reason="lost", description="物流一周没动")
        assert (case["status"], case["stage"]) == ("open", "shipped")
        case = await move(api, case, "report_to_carrier")
        assert case["status"] == "awaiting_carrier"
        case = await move(api, case, "record_carrier_verdict", confirmed=True, verdict="确认丢失")
        assert case["status"] == "open"
        case = await move(api, case, "approve")
        case = await move(api, case, "create_reship")
        assert case["status"] == "reshipped"
        assert path_of(await timeline(api, case)) == [
            ("open", "open"),
            ("report_to_carrier", "awaiting_carrier"),
            ("record_carrier_verdict", "open"),
            ("approve", "approved"),
            ("create_reship", "reshipped"),
        ]
        (row,) = (await api.call("GET", "/v1/registers/logistics-follow-up", "ops")).json()["items"]
        assert (row["case_id"], row["outcome"]) == (case["id"], "carrier confirmed")

    async def test_carrier_does_not_confirm_and_support_rejects(self, api: Api) -> None:
        await api.put_order(signed_at=None)
        case = await opened(api, remedy="reship", reason="lost")
        case = await move(api, case, "report_to_carrier")
        case = await move(api, case, "record_carrier_verdict", confirmed=False, verdict="包裹在派送中")
        assert (case["status"], case["details"]["carrier_confirmed"]) == ("open", False)
        case = await move(
            api, case, "reject", reason_code="carrier_in_transit", message="包裹仍在派送，请耐心等待"
        )
        assert case["status"] == "rejected"
        assert (await line(api))["remaining_allowance"] == "238.00"


class TestInspectionFailed:
    async def test_the_case_goes_back_to_support_with_the_notes(self, api: Api) -> None:
        await api.put_order()
        case = await opened(api)
        case = await move(api, case, "record_retention", offer="coupon", outcome="declined")
        case = await move(api, case, "approve")
        case = await move(api, case, "record_receipt", "warehouse")
        case = await move(
            api, case, "record_inspection", "warehouse", passed=False, notes="吊牌已剪，有穿着痕迹"
        )
        assert case["status"] == "open"
        assert case["details"]["inspection"]["passed"] is False
        last = (await timeline(api, case))[-1]
        assert (last["from_status"], last["to_status"], last["data"]["notes"]) == (
            "return_received",
            "open",
            "吊牌已剪，有穿着痕迹",
        )
        async with unchanged(api):
            assert_problem(await api.act(case, "refund"), 409, "invalid_transition")
        assert (await line(api))["compensated"] == "119.00"  # still reserved while support decides
        case = await move(api, case, "reject", reason_code="not_resaleable", message="商品影响二次销售")
        assert (await line(api))["compensated"] == "0.00"
