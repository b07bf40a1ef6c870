"""Cashback tasks 返现任务单 and the ops registers 表格: verification, the approval event, the logistics
follow-up register with its carrier SLA on the business calendar, retention, CSV export, reused photos."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import openpyxl
import pytest
from aftersales_shared import topics
from aftersales_shared.export import XLSX, Column
from case_api.api import registers
from case_api_checks import assert_problem, outbox_rows, snapshot, unchanged, upload
from case_api_testing import Api, image, order_body

PAYEE = {"alipay_account": "zhangsan@example.com", "name": "张三"}
CASHBACK = {
    "order_id": "o-1",
    "line_id": "L1",
    "reason": "price_difference",
    "amount": "15.00",
    "payee": PAYEE,
    "note": "活动价差",
}
APPROVED = "aftersales.cashback.approved.v1"
CREATED = "aftersales.cashback.created.v1"
REJECTED = "aftersales.cashback.rejected.v1"


async def create_task(api: Api, who: str = "support", **changes: Any) -> dict[str, Any]:
    response = await api.call("POST", "/v1/cashback-tasks", who, json={**CASHBACK, **changes})
    assert response.status_code == 201, response.text
    return dict(response.json())


def events(rows: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(row.payload) for row in rows]


class TestCashbackVerification:
    async def test_a_new_task_waits_for_verification(self, api: Api) -> None:
        await api.put_order()
        task = await create_task(api, "storefront")
        assert (task["status"], task["amount"], task["payee"]) == ("pending_verification", "15.00", PAYEE)
        # told to storefronts following cashback (webhooks), without the payee; payout-worker pays approvals
        rows = await outbox_rows(api, topics.CASHBACK)
        assert [(r.key, e["type"]) for r, e in zip(rows, events(rows), strict=True)] == [
            (task["id"], CREATED)
        ]
        (created,) = events(rows)
        assert created["data"]["status"] == "pending_verification" and "payee" not in created["data"]
        read = (await api.call("GET", f"/v1/cashback-tasks/{task['id']}", "ops")).json()
        assert read["status"] == "pending_verification"

    async def test_approval_emits_one_event_keyed_by_the_task(self, api: Api) -> None:
        await api.put_order()
        task = await create_task(api)
        response = await api.call(
            "POST", f"/v1/cashback-tasks/{task['id']}/approve", "support", json={"expected_version": 1}
        )
        assert response.status_code == 200, response.text
        approved = response.json()
        assert (approved["status"], approved["verified_by"], approved["version"]) == (
            "approved",
            "support",
            2,
        )
        rows = [
            r for r in await outbox_rows(api, topics.CASHBACK) if json.loads(r.payload)["type"] != CREATED
        ]
        assert [(r.topic, r.key) for r in rows] == [("aftersales.cashback.v1", task["id"])]
        (event,) = events(rows)
        assert (event["type"], event["subject"]) == (APPROVED, task["id"])
        assert event["data"]["cashback_task_id"] == task["id"]
        assert (event["data"]["amount"], event["data"]["payee"]) == ("15.00", PAYEE)
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert order["lines"][0]["compensated"] == "15.00"

    async def test_approving_twice_is_409_and_emits_nothing_more(self, api: Api) -> None:
        await api.put_order()
        task = await create_task(api)
        path = f"/v1/cashback-tasks/{task['id']}/approve"
        assert (await api.call("POST", path, "support")).status_code == 200
        async with unchanged(api):
            again = await api.call("POST", path, "support")
        problem = assert_problem(again, 409, "invalid_transition")
        assert problem["task_status"] == "approved"
        assert [e["type"] for e in events(await outbox_rows(api, topics.CASHBACK))] == [CREATED, APPROVED]

    async def test_rejection_keeps_the_reason_and_tells_only_storefronts(self, api: Api) -> None:
        await api.put_order()
        task = await create_task(api)
        response = await api.call(
            "POST", f"/v1/cashback-tasks/{task['id']}/reject", "support", json={"reason": "差价已在平台退还"}
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["rejection_reason"]) == (
            "rejected",
            "差价已在平台退还",
        )
        told = events(await outbox_rows(api, topics.CASHBACK))
        assert [e["type"] for e in told] == [CREATED, REJECTED]  # no approval: nothing for payout-worker
        assert (told[1]["data"]["status"], told[1]["data"]["rejection_reason"]) == (
            "rejected",
            "差价已在平台退还",
        )
        for decision in ("approve", "reject"):
            async with unchanged(api):
                late = await api.call("POST", f"/v1/cashback-tasks/{task['id']}/{decision}", "support")
            assert_problem(late, 409, "invalid_transition")
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert order["lines"][0]["compensated"] == "0.00"  # a rejected task releases its reservation

    async def test_a_pending_task_reserves_its_amount_against_the_cap(self, api: Api) -> None:
        await api.put_order()
        await create_task(api, amount="200.00")
        async with unchanged(api):
            response = await api.call(
                "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "amount": "38.01"}
            )
        assert assert_problem(response, 422, "policy_refused")["facts"]["remaining_allowance"] == "38.00"

    async def test_list_filters(self, api: Api) -> None:
        await api.put_order()
        first = await create_task(api)
        second = await create_task(api, amount="5.00")
        await api.call("POST", f"/v1/cashback-tasks/{first['id']}/approve", "support")
        pending = (
            await api.call("GET", "/v1/cashback-tasks", "ops", params={"status": "pending_verification"})
        ).json()["items"]
        assert [t["id"] for t in pending] == [second["id"]]
        everything = (await api.call("GET", "/v1/cashback-tasks", "ops", params={"order_id": "o-1"})).json()
        assert [t["id"] for t in everything["items"]] == [second["id"], first["id"]]


def csv_rows(response: Any, columns: Sequence[Column]) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV's Chinese header, and its rows keyed by the register's JSON keys."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    raw = response.content
    assert raw.startswith("\ufeff".encode()), "UTF-8 BOM, so Excel reads the Chinese"
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
    header, *rows = list(reader)
    assert header == [c.header for c in columns]
    return header, [dict(zip([c.key for c in columns], row, strict=True)) for row in rows]


async def damaged_case(api: Api, order_id: str = "o-1", photos: int = 3, first: int = 1) -> dict[str, Any]:
    evidence = [await upload(api, image(first + n)) for n in range(photos)]
    response = await api.call(
        "POST",
        "/v1/cases",
        "storefront",
        json={
            "order_id": order_id,
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "reship",
            "reason": "damaged",
            "description": "外箱破损，衣服被划破",
            "evidence_ids": evidence,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestLogisticsFollowUp:
    async def test_a_carrier_problem_is_registered_with_carrier_and_tracking_number(self, api: Api) -> None:
        await api.put_order(
            shipment={
                "carrier": "顺丰速运",
                "tracking_no": "SF1000001",
                "warehouse_id": "WH-HZ",
                "shipped_at": "2026-11-02T09:00:00+08:00",
            }
        )
        case = await damaged_case(api)
        assert case["status"] == "open"
        rows = (await api.call("GET", "/v1/registers/logistics-follow-up", "ops")).json()["items"]
        (row,) = rows
        assert (row["case_id"], row["order_id"], row["carrier"], row["tracking_no"], row["problem"]) == (
            case["id"],
            "o-1",
            "顺丰速运",
            "SF1000001",
            "damaged",
        )
        assert len(row["evidence_ids"]) == 3
        assert row["reported_at"] is None and row["sla_due_at"] is None

    async def test_a_customer_reason_is_not_a_carrier_problem(self, api: Api) -> None:
        await api.put_order()
        assert (await api.open_case()).status_code == 201
        assert (await api.call("GET", "/v1/registers/logistics-follow-up", "ops")).json()["items"] == []

    @pytest.mark.parametrize(
        ("reported", "due"),
        [
            ("2026-11-06T10:00:00+08:00", "2026-11-10T10:00:00+08:00"),  # Friday → Tuesday
            ("2026-09-30T10:00:00+08:00", "2026-10-09T10:00:00+08:00"),  # before National Day (Oct 1-7 off)
            (
                "2026-10-09T16:30:00+08:00",
                "2026-10-12T16:30:00+08:00",
            ),  # Saturday Oct 10 is a make-up working day
            (
                "2026-10-03T11:00:00+08:00",
                "2026-10-10T09:00:00+08:00",
            ),  # a holiday: from Oct 8 09:00, Oct 10 works
        ],
        ids=["friday", "before-national-day", "make-up-saturday", "on-a-holiday"],
    )
    async def test_report_to_carrier_sets_the_sla_in_working_days(
        self, api: Api, reported: str, due: str
    ) -> None:
        at = datetime.fromisoformat(reported)
        api.clock.set(at)
        await api.put_order(
            paid_at="2026-09-20T10:00:00+08:00",
            signed_at=None,
            shipment={"carrier": "SF", "tracking_no": "SF1000001", "shipped_at": "2026-09-21T09:00:00+08:00"},
        )
        opened = await api.open_case(remedy="reship", reason="lost", description="物流十天没更新")
        assert opened.status_code == 201, opened.text
        case = (await api.act(opened.json(), "report_to_carrier", notes="已联系顺丰")).json()
        assert case["status"] == "awaiting_carrier"
        (row,) = (await api.call("GET", "/v1/registers/logistics-follow-up", "support")).json()["items"]
        assert datetime.fromisoformat(row["reported_at"]) == at
        assert datetime.fromisoformat(row["sla_due_at"]) == datetime.fromisoformat(due)
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        assert datetime.fromisoformat(timeline[-1]["data"]["sla_due_at"]) == datetime.fromisoformat(due)

    async def test_the_carrier_verdict_is_recorded(self, api: Api) -> None:
        await api.put_order(signed_at=None)
        case = (await api.open_case(remedy="reship", reason="lost")).json()
        case = (await api.act(case, "report_to_carrier")).json()
        case = (await api.act(case, "record_carrier_verdict", confirmed=True, verdict="中转站丢失")).json()
        (row,) = (await api.call("GET", "/v1/registers/logistics-follow-up", "support")).json()["items"]
        assert (row["verdict"], row["outcome"]) == ("中转站丢失", "carrier confirmed")

    async def test_csv_export(self, api: Api) -> None:
        await api.put_order(shipment={"carrier": "顺丰速运", "tracking_no": "SF1000001"})
        case = await damaged_case(api)
        header, rows = csv_rows(
            await api.call("GET", "/v1/registers/logistics-follow-up", "ops", params={"format": "csv"}),
            registers.FOLLOW_UP,
        )
        assert header[:3] == ["登记编号", "登记时间", "订单号"]
        assert {"快递公司", "快递单号", "快递答复期限", "凭证"} <= set(header)
        (row,) = rows
        assert (row["case_id"], row["carrier"], row["tracking_no"]) == (case["id"], "顺丰速运", "SF1000001")
        assert len(row["evidence_ids"].split(";")) == 3


class TestRetentionRegister:
    async def test_record_retention_is_registered_with_offer_and_outcome(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case()).json()
        case = (
            await api.act(
                case, "record_retention", offer="coupon", outcome="accepted", real_reason="颜色和图片不一样"
            )
        ).json()
        assert case["status"] == "retained"
        (row,) = (await api.call("GET", "/v1/registers/retention", "support")).json()["items"]
        assert (row["case_id"], row["order_id"], row["shop_id"]) == (case["id"], "o-1", "shop-a")
        assert (row["remedy"], row["reason"], row["offer"], row["outcome"]) == (
            "return_refund",
            "no_reason",
            "coupon",
            "accepted",
        )
        assert (row["real_reason"], row["recorded_by"]) == ("颜色和图片不一样", "support")

    async def test_csv_keeps_the_chinese_text(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case()).json()
        await api.act(
            case, "record_retention", offer="gift", outcome="declined", real_reason="=尺码偏小，想换大一码"
        )
        header, rows = csv_rows(
            await api.call("GET", "/v1/registers/retention", "ops", params={"format": "csv"}),
            registers.RETENTION,
        )
        assert header == [
            "登记编号",
            "登记时间",
            "订单号",
            "售后单号",
            "店铺",
            "售后类型",
            "原因",
            "客户真实原因",
            "挽留方案",
            "结果",
            "登记人",
        ]
        (row,) = rows
        # a leading "=" would run as a formula in a spreadsheet: it is quoted
        assert (row["real_reason"], row["offer"], row["outcome"]) == (
            "'=尺码偏小，想换大一码",
            "gift",
            "declined",
        )


class TestCashbackRegister:
    async def test_json_and_csv(self, api: Api) -> None:
        await api.put_order()
        task = await create_task(api)
        await api.call("POST", f"/v1/cashback-tasks/{task['id']}/approve", "support")
        (row,) = (await api.call("GET", "/v1/registers/cashback", "ops")).json()["items"]
        assert (row["id"], row["status"], row["payee_name"], row["payee_account"]) == (
            task["id"],
            "approved",
            "张三",
            "zhangsan@example.com",
        )
        header, rows = csv_rows(
            await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "csv"}),
            registers.CASHBACK,
        )
        assert "收款人" in header and "支付宝账号" in header
        assert (rows[0]["payee_name"], rows[0]["amount"], rows[0]["verified_by"]) == (
            "张三",
            "15.00",
            "support",
        )

    async def test_an_empty_register_is_a_header_only_csv(self, api: Api) -> None:
        header, rows = csv_rows(
            await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "csv"}),
            registers.CASHBACK,
        )
        assert header[0] == "返现任务单号" and rows == []

    async def test_an_unknown_format_is_422(self, api: Api) -> None:
        response = await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "xls"})
        assert_problem(response, 422, "validation_failed")


class TestReusedEvidence:
    async def test_the_same_file_on_a_case_of_another_order_is_flagged(self, api: Api) -> None:
        await api.put_order("o-1")
        await api.put_order("o-2", buyer={"id": "buyer-2", "name": "李四"})
        first = await damaged_case(api, "o-1", first=1)
        assert {e["reused_from_order_id"] for e in first["evidence"]} == {None}
        # the same three photos uploaded again (new ids, same bytes) for another order
        second = await damaged_case(api, "o-2", first=1)
        assert [e["reused_from_order_id"] for e in second["evidence"]] == ["o-1", "o-1", "o-1"]
        read = (await api.call("GET", f"/v1/cases/{second['id']}", "support")).json()
        assert [e["reused_from_order_id"] for e in read["evidence"]] == ["o-1", "o-1", "o-1"]

    async def test_the_same_evidence_id_attached_to_another_order_is_flagged(self, api: Api) -> None:
        await api.put_order("o-1")
        await api.put_order("o-2")
        first = await damaged_case(api, "o-1", photos=3, first=10)
        photo = first["evidence"][0]["evidence_id"]
        case = (
            await api.call(
                "POST",
                "/v1/cases",
                "storefront",
                json={
                    "order_id": "o-2",
                    "lines": [{"line_id": "L1", "quantity": 1}],
                    "remedy": "return_refund",
                    "reason": "size",
                    "evidence_ids": [],
                },
            )
        ).json()
        assert case["status"] == "awaiting_evidence"
        case = (await api.act(case, "attach_evidence", "storefront", evidence_ids=[photo])).json()
        assert [(e["evidence_id"], e["reused_from_order_id"]) for e in case["evidence"]] == [(photo, "o-1")]
        assert case["status"] == "retention"

    async def test_a_new_photo_and_one_on_the_same_order_are_not_flagged(self, api: Api) -> None:
        await api.put_order("o-1")
        first = await damaged_case(api, "o-1", first=20)
        await api.act(first, "withdraw", "storefront")
        again = await damaged_case(api, "o-1", first=20)
        assert {e["reused_from_order_id"] for e in again["evidence"]} == {None}
        before = await snapshot(api)
        assert before.counts["case_evidence"] == 6


class TestSnapshotKeepsTheLedger:
    """R-COMP-CAP: a storefront's new snapshot cannot pay a line less than the ledger holds for it."""

    async def test_paid_amount_cannot_drop_below_what_is_held(self, api: Api) -> None:
        await api.put_order()
        await create_task(api, amount="100.00")
        lowered = order_body()
        lowered["lines"][0]["paid_amount"] = "99.99"
        async with unchanged(api):
            refused = await api.call("PUT", "/v1/orders/o-1", "storefront", json=lowered)
        problem = assert_problem(refused, 409, "paid_below_compensated")
        assert (problem["line_id"], problem["compensated"]) == ("L1", "100.00")
        lowered["lines"][0]["paid_amount"] = "100.00"
        assert (await api.call("PUT", "/v1/orders/o-1", "storefront", json=lowered)).status_code == 200


LONG_ORDER_ID = "4012345678901234567"  # 19 digits: a number in Excel would lose the last ones


class TestRegisterSpreadsheets:
    """Every register as xlsx and CSV: Chinese headers, Beijing time, ids as text."""

    async def cashback_on_a_long_order(self, api: Api) -> dict[str, Any]:
        api.clock.set(datetime.fromisoformat("2026-11-05T23:30:15.123456+00:00"))  # 07:30:15 next day
        await api.put_order(LONG_ORDER_ID)
        return await create_task(api, order_id=LONG_ORDER_ID)

    async def test_xlsx_has_chinese_headers_real_dates_and_ids_as_text(self, api: Api) -> None:
        task = await self.cashback_on_a_long_order(api)
        response = await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "xlsx"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(XLSX)
        assert 'filename="cashback.xlsx"' in response.headers["content-disposition"]
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert sheet is not None and sheet.title == "返现表"
        header, _ = list(sheet.iter_rows(values_only=True))
        assert list(header) == [c.header for c in registers.CASHBACK]
        cells = dict(zip([c.key for c in registers.CASHBACK], sheet[2], strict=True))
        assert (cells["id"].value, cells["order_id"].value) == (task["id"], LONG_ORDER_ID)
        assert cells["order_id"].data_type == "s"
        assert cells["created_at"].value == datetime(2026, 11, 6, 7, 30, 15)  # Beijing time, a date cell
        assert cells["created_at"].is_date
        assert cells["amount"].value == 15 and cells["amount"].number_format == "0.00"
        assert cells["paid_at"].value is None

    async def test_csv_times_are_beijing_time_to_the_second(self, api: Api) -> None:
        await self.cashback_on_a_long_order(api)
        _, (row,) = csv_rows(
            await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "csv"}),
            registers.CASHBACK,
        )
        assert (row["order_id"], row["created_at"]) == (LONG_ORDER_ID, "2026-11-06 07:30:15")

    @pytest.mark.parametrize("name", ["logistics-follow-up", "cashback", "retention"])
    async def test_every_register_downloads_as_xlsx(self, api: Api, name: str) -> None:
        response = await api.call("GET", f"/v1/registers/{name}", "support", params={"format": "xlsx"})
        assert response.status_code == 200, response.text
        (header,) = openpyxl.load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True)
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in str(h)) for h in header)

    async def test_a_formula_is_a_text_cell_in_xlsx(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case()).json()
        await api.act(case, "record_retention", offer="gift", outcome="declined", real_reason="=1+2\x01")
        response = await api.call("GET", "/v1/registers/retention", "ops", params={"format": "xlsx"})
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        cell = sheet.cell(row=2, column=[c.key for c in registers.RETENTION].index("real_reason") + 1)
        assert (cell.value, cell.data_type) == ("=1+2", "s")
