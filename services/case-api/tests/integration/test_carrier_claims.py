"""Carrier claims 快递索赔 (R-CARRIER-CLAIM) and the carrier report 报快递 (R-CARRIER-REPORT): booked per
follow-up entry, followed to claimed/accepted/paid/refused, shown in the logistics follow-up register,
totalled per carrier and month, and the report with the recipient's details for support only."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import openpyxl
import pytest
from case_api_checks import assert_problem, outbox_rows, upload
from case_api_testing import Api, image

SF = {"carrier": "顺丰速运", "tracking_no": "SF1000001", "shipped_at": "2026-11-02T09:00:00+08:00"}
YTO = {"carrier": "圆通速递", "tracking_no": "YT2000002", "shipped_at": "2026-11-02T09:00:00+08:00"}


async def move(api: Api, case: dict[str, Any], action: str, **body: Any) -> dict[str, Any]:
    response = await api.act(case, action, **body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def lost_and_reshipped(
    api: Api, order_id: str = "o-1", shipment: dict[str, Any] = SF
) -> dict[str, Any]:
    """A lost parcel (the carrier confirmed it) and its reship of one T-shirt (119.00 paid)."""
    await api.put_order(order_id, signed_at=None, shipment=shipment)
    opened = await api.open_case(
        order_id=order_id, remedy="reship", reason="lost", description="物流一周没动"
    )
    assert opened.status_code == 201, opened.text
    case = await move(api, opened.json(), "report_to_carrier")
    case = await move(api, case, "record_carrier_verdict", confirmed=True, verdict="确认丢失")
    case = await move(api, case, "approve")
    return await move(api, case, "create_reship")


async def book(api: Api, case: dict[str, Any], who: str = "support", **body: Any) -> Any:
    return await api.call("POST", f"/v1/cases/{case['id']}/carrier-claim", who, json=body)


async def decide(api: Api, claim: dict[str, Any], action: str, who: str = "support", **body: Any) -> Any:
    return await api.call("POST", f"/v1/carrier-claims/{claim['id']}/{action}", who, json=body)


async def follow_up_row(api: Api) -> dict[str, Any]:
    (row,) = (await api.call("GET", "/v1/registers/logistics-follow-up", "ops")).json()["items"]
    return dict(row)


class TestBooking:
    async def test_a_reship_is_claimed_with_its_goods_and_postage(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        response = await book(api, case, postage_amount="12.00", note="顺丰理赔群已报")
        assert response.status_code == 201, response.text
        claim = response.json()
        assert (claim["status"], claim["carrier"], claim["tracking_no"]) == (
            "claimed",
            "顺丰速运",
            "SF1000001",
        )
        assert (claim["goods_amount"], claim["postage_amount"], claim["claimed_amount"]) == (
            "119.00",
            "12.00",
            "131.00",
        )
        assert (await follow_up_row(api))["carrier_claim"] == {"status": "claimed", "amount": "131.00"}
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        assert timeline[-1]["action"] == "carrier_claim_booked"
        assert timeline[-1]["data"]["claimed_amount"] == "131.00"

    async def test_without_a_reship_the_lost_goods_are_claimed(self, api: Api) -> None:
        await api.put_order(signed_at=None, shipment=SF)
        case = (await api.open_case(remedy="reship", reason="lost")).json()
        claim = (await book(api, case)).json()
        assert (claim["goods_amount"], claim["claimed_amount"]) == ("119.00", "119.00")

    async def test_the_amounts_support_gives_win(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        claim = (await book(api, case, "ops", goods_amount="100.00", postage_amount="0.01")).json()
        assert claim["claimed_amount"] == "100.01" and claim["claimed_by"] == "ops"

    async def test_a_claim_of_nothing_is_refused(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        body = assert_problem(await book(api, case, goods_amount="0.00"), 422, "policy_refused")
        assert body["rule"] == "R-CARRIER-CLAIM" and body["message_zh"] and body["message_en"]
        assert (await follow_up_row(api))["carrier_claim"] is None

    async def test_not_a_carrier_problem(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case()).json()  # a no-reason return
        body = assert_problem(await book(api, case, goods_amount="10.00"), 422, "policy_refused")
        assert body["rule"] == "R-CARRIER-CLAIM"

    async def test_one_claim_per_follow_up(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        first = (await book(api, case)).json()
        body = assert_problem(await book(api, case, postage_amount="5.00"), 409, "claim_exists")
        assert body["carrier_claim_id"] == first["id"]

    async def test_a_replayed_booking_answers_the_same(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        headers = {"Idempotency-Key": "claim-1"}
        path = f"/v1/cases/{case['id']}/carrier-claim"
        first = await api.call("POST", path, "support", json={"postage_amount": "8.00"}, headers=headers)
        again = await api.call("POST", path, "support", json={"postage_amount": "8.00"}, headers=headers)
        assert first.status_code == again.status_code == 201 and first.json() == again.json()

    @pytest.mark.parametrize(
        "body",
        [{"goods_amount": "-1.00"}, {"postage_amount": 1.5}, {"goods_amount": "1.001"}, {"colour": "red"}],
        ids=["negative", "float", "sub-cent", "unknown-field"],
    )
    async def test_bad_amounts_are_422_and_book_nothing(self, api: Api, body: dict[str, Any]) -> None:
        case = await lost_and_reshipped(api)
        assert_problem(await book(api, case, **body), 422, "validation_failed")
        assert (await follow_up_row(api))["carrier_claim"] is None

    async def test_roles_and_shops(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        assert_problem(await book(api, case, "storefront"), 403)
        assert_problem(await book(api, case, "support_b"), 404)
        claim = (await book(api, case)).json()
        assert_problem(await api.call("GET", f"/v1/carrier-claims/{claim['id']}", "support_b"), 404)
        assert_problem(await decide(api, claim, "accept", "support_b", amount="1.00"), 404)
        assert_problem(await decide(api, claim, "accept", "storefront", amount="1.00"), 403)
        assert (await api.call("GET", f"/v1/carrier-claims/{claim['id']}", "ops")).json()[
            "status"
        ] == "claimed"


class TestOutcome:
    async def claim(self, api: Api) -> dict[str, Any]:
        case = await lost_and_reshipped(api)
        return dict((await book(api, case, postage_amount="12.00")).json())  # 131.00

    async def test_accepted_then_paid(self, api: Api) -> None:
        claim = await self.claim(api)
        accepted = (await decide(api, claim, "accept", amount="131.00")).json()  # all of it: the ceiling
        assert (accepted["status"], accepted["accepted_amount"], accepted["version"]) == (
            "accepted",
            "131.00",
            2,
        )
        assert (await follow_up_row(api))["carrier_claim"] == {"status": "accepted", "amount": "131.00"}
        paid = (
            await decide(api, accepted, "pay", amount="120.00", paid_at="2026-11-20T15:00:00+08:00")
        ).json()
        assert (paid["status"], paid["paid_amount"]) == ("paid", "120.00")
        assert datetime.fromisoformat(paid["paid_at"]) == datetime.fromisoformat("2026-11-20T15:00:00+08:00")
        assert (await follow_up_row(api))["carrier_claim"] == {"status": "paid", "amount": "120.00"}

    async def test_more_than_claimed_or_accepted_is_refused(self, api: Api) -> None:
        claim = await self.claim(api)
        body = assert_problem(await decide(api, claim, "accept", amount="131.01"), 422, "policy_refused")
        assert body["rule"] == "R-CARRIER-CLAIM" and body["facts"]["ceiling"] == "131.00"
        assert (await api.call("GET", f"/v1/carrier-claims/{claim['id']}", "support")).json()["version"] == 1
        accepted = (await decide(api, claim, "accept", amount="100.00")).json()
        assert_problem(await decide(api, accepted, "pay", amount="100.01"), 422, "policy_refused")
        assert_problem(await decide(api, accepted, "pay", amount="0.00"), 422, "validation_failed")
        assert (await decide(api, accepted, "pay", amount="100.00")).json()["status"] == "paid"

    async def test_refused(self, api: Api) -> None:
        claim = await self.claim(api)
        refused = (await decide(api, claim, "refuse", reason="超过理赔时效")).json()
        assert (refused["status"], refused["refusal_reason"]) == ("refused", "超过理赔时效")
        assert (await follow_up_row(api))["carrier_claim"] == {"status": "refused", "amount": "131.00"}
        assert_problem(await decide(api, claim, "refuse", reason=""), 422, "validation_failed")

    @pytest.mark.parametrize(
        ("path", "action", "body"),
        [
            ([], "pay", {"amount": "1.00"}),  # not accepted yet
            (["refuse"], "accept", {"amount": "1.00"}),
            (["accept", "pay"], "refuse", {"reason": "x"}),
            (["accept", "pay"], "pay", {"amount": "1.00"}),
        ],
        ids=["pay-unaccepted", "accept-refused", "refuse-paid", "pay-twice"],
    )
    async def test_moves_the_status_does_not_allow(
        self, api: Api, path: list[str], action: str, body: dict[str, Any]
    ) -> None:
        claim = await self.claim(api)
        steps = {"accept": {"amount": "10.00"}, "pay": {"amount": "10.00"}, "refuse": {"reason": "拒赔"}}
        for step in path:
            claim = (await decide(api, claim, step, **steps[step])).json()
        problem = assert_problem(await decide(api, claim, action, **body), 409, "invalid_transition")
        assert problem["status"] == 409
        assert (await api.call("GET", f"/v1/carrier-claims/{claim['id']}", "support")).json() == claim

    async def test_a_stale_version_is_409(self, api: Api) -> None:
        claim = await self.claim(api)
        assert_problem(
            await decide(api, claim, "accept", amount="1.00", expected_version=2), 409, "stale_version"
        )

    async def test_claims_publish_nothing_to_storefronts(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        before = len(await outbox_rows(api))
        claim = (await book(api, case)).json()
        await decide(api, claim, "accept", amount="1.00")
        assert len(await outbox_rows(api)) == before  # what the shop claims is not the storefront's business


class TestRegisters:
    async def test_totals_per_carrier_and_month(self, api: Api) -> None:
        api.clock.set(datetime.fromisoformat("2026-11-30T23:30:00+08:00"))
        nov = await lost_and_reshipped(api, "o-1", SF)
        nov_claim = (await book(api, nov, postage_amount="10.00")).json()  # 129.00
        api.clock.set(datetime.fromisoformat("2026-12-01T00:30:00+08:00"))  # 30 November 16:30 UTC
        dec = await lost_and_reshipped(api, "o-2", SF)
        dec_claim = (await book(api, dec)).json()  # 119.00
        yto = await lost_and_reshipped(api, "o-3", YTO)
        yto_claim = (await book(api, yto)).json()
        await decide(api, nov_claim, "accept", amount="129.00")
        await decide(api, dec_claim, "refuse", reason="包装不合格")
        accepted = (await decide(api, yto_claim, "accept", amount="100.00")).json()
        await decide(api, accepted, "pay", amount="100.00")
        totals = (await api.call("GET", "/v1/registers/carrier-claims/totals", "ops")).json()["items"]
        fields = ("carrier", "month", "claims", "claimed", "accepted", "paid", "refused", "outstanding")
        assert [tuple(t[f] for f in fields) for t in totals] == [
            ("顺丰速运", "2026-12", 1, "119.00", "0.00", "0.00", "119.00", "0.00"),
            ("圆通速递", "2026-12", 1, "119.00", "100.00", "100.00", "0.00", "0.00"),
            ("顺丰速运", "2026-11", 1, "129.00", "129.00", "0.00", "0.00", "129.00"),
        ]
        sf_only = await api.call(
            "GET", "/v1/registers/carrier-claims/totals", "ops", params={"carrier": "顺丰速运"}
        )
        assert [t["month"] for t in sf_only.json()["items"]] == ["2026-12", "2026-11"]
        xlsx = await api.call("GET", "/v1/registers/carrier-claims/totals", "ops", params={"format": "xlsx"})
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
        header, first, *_ = list(sheet.iter_rows(values_only=True))
        assert header[:3] == ("快递公司", "月份", "索赔单数") and first[:3] == ("顺丰速运", "2026-12", 1)
        claims = (
            await api.call("GET", "/v1/registers/carrier-claims", "support", params={"status": "paid"})
        ).json()
        assert [c["id"] for c in claims["items"]] == [yto_claim["id"]]

    async def test_another_shops_claims_are_not_counted(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        await book(api, case)
        assert (await api.call("GET", "/v1/registers/carrier-claims/totals", "support_b")).json()[
            "items"
        ] == []
        assert (await api.call("GET", "/v1/registers/carrier-claims", "support_b")).json()["items"] == []
        assert_problem(await api.call("GET", "/v1/registers/carrier-claims", "storefront"), 403)

    async def test_the_follow_up_register_shows_the_claim_in_xlsx(self, api: Api) -> None:
        case = await lost_and_reshipped(api)
        await book(api, case, postage_amount="12.00")
        response = await api.call(
            "GET", "/v1/registers/logistics-follow-up", "ops", params={"format": "xlsx"}
        )
        header, row = list(
            openpyxl.load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True)
        )
        cells = dict(zip(header, row, strict=True))
        assert (cells["索赔状态"], cells["索赔金额"]) == ("claimed", 131)


class TestCarrierReport:
    async def damaged(self, api: Api) -> dict[str, Any]:
        await api.put_order(shipment=SF)
        evidence = [await upload(api, image(n)) for n in (1, 2, 3)]
        response = await api.open_case(
            remedy="reship", reason="damaged", description="外箱破损", evidence_ids=evidence
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def test_support_gets_the_recipient_and_the_photos(self, api: Api) -> None:
        case = await self.damaged(api)
        await book(api, case, goods_amount="119.00", postage_amount="12.00")
        await lost_and_reshipped(api, "o-2", YTO)  # another carrier: not in SF's report
        report = await api.call(
            "GET", "/v1/registers/carrier-report", "support", params={"carrier": "顺丰速运"}
        )
        (row,) = report.json()["items"]
        assert (row["tracking_no"], row["order_id"], row["problem"]) == ("SF1000001", "o-1", "damaged")
        assert (row["recipient_name"], row["recipient_phone"]) == ("张三", "13812345678")
        assert row["recipient_address"] == "浙江省杭州市西湖区文三路 1 号"
        assert len(row["photos"]) == 3 and all(p.startswith("ev") for p in row["photos"])
        assert row["carrier_claim"] == {"status": "claimed", "amount": "131.00"}

    async def test_ops_gets_no_recipient(self, api: Api) -> None:
        await self.damaged(api)
        for fmt in ("json", "csv", "xlsx"):
            report = await api.call(
                "GET", "/v1/registers/carrier-report", "ops", params={"carrier": "顺丰速运", "format": fmt}
            )
            assert report.status_code == 200, report.text
            text = (
                report.text
                if fmt != "xlsx"
                else str(
                    list(
                        openpyxl.load_workbook(io.BytesIO(report.content)).active.iter_rows(values_only=True)
                    )
                )
            )
            assert "张三" not in text and "13812345678" not in text and "文三路" not in text, fmt
            assert "SF1000001" in text

    async def test_as_xlsx_for_the_claims_desk(self, api: Api) -> None:
        await self.damaged(api)
        report = await api.call(
            "GET", "/v1/registers/carrier-report", "support", params={"carrier": "顺丰速运", "format": "xlsx"}
        )
        sheet = openpyxl.load_workbook(io.BytesIO(report.content)).active
        assert sheet.title == "报快递-顺丰速运"
        header, row = list(sheet.iter_rows(values_only=True))
        cells = dict(zip(header, row, strict=True))
        assert (cells["快递单号"], cells["收件人"], cells["收件人电话"]) == (
            "SF1000001",
            "张三",
            "13812345678",
        )
        assert len(cells["照片"].split(";")) == 3

    async def test_the_carrier_is_required_and_checked(self, api: Api) -> None:
        assert_problem(await api.call("GET", "/v1/registers/carrier-report", "support"), 422)
        assert_problem(
            await api.call("GET", "/v1/registers/carrier-report", "support", params={"carrier": "x" * 65}),
            422,
        )
        assert_problem(
            await api.call("GET", "/v1/registers/carrier-report", "storefront", params={"carrier": "SF"}), 403
        )
        other = await api.call(
            "GET", "/v1/registers/carrier-report", "support_b", params={"carrier": "顺丰速运"}
        )
        assert other.json()["items"] == []
