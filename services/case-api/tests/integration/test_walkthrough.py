"""The manual's main path over HTTP only: push an order, read options, open a case, upload evidence,
and walk it through retention, approval, return, receipt and inspection, to the refund."""

from __future__ import annotations

from case_api_testing import Api, image


class TestReturnAndRefund:
    async def test_no_reason_return_from_order_to_refund(self, api: Api) -> None:
        await api.put_order()
        options = (await api.call("GET", "/v1/orders/o-1/after-sales-options", "storefront")).json()[
            "options"
        ]
        no_reason = next(
            o
            for o in options
            if o["line_id"] == "L1" and o["remedy"] == "return_refund" and o["reason"] == "no_reason"
        )
        assert no_reason["eligible"] is True
        assert no_reason["deadline"].startswith("2026-11-10T16:00:00") or no_reason["deadline"].startswith(
            "2026-11-11T00:00:00+08:00"
        )

        uploaded = await api.call(
            "POST", "/v1/evidence", "storefront", files={"file": ("tag.jpg", image(1), "image/jpeg")}
        )
        assert uploaded.status_code == 201, uploaded.text

        opened = await api.open_case(evidence_ids=[uploaded.json()["id"]], description="不喜欢颜色")
        assert opened.status_code == 201, opened.text
        case = opened.json()
        assert case["status"] == "retention"
        assert case["amount"] == "119.00"

        case = (
            await api.act(case, "record_retention", offer="coupon", outcome="declined", real_reason="color")
        ).json()
        assert case["status"] == "open"
        case = (await api.act(case, "approve")).json()
        assert case["status"] == "awaiting_return"
        case = (
            await api.act(case, "submit_return_tracking", "storefront", carrier="YTO", tracking_no="YT0001")
        ).json()
        case = (await api.act(case, "record_receipt", "warehouse")).json()
        assert case["status"] == "return_received"
        case = (await api.act(case, "record_inspection", "warehouse", passed=True, notes="tags on")).json()
        refunded = await api.act(case, "refund")
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["status"] == "refunded"

        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        assert [e["action"] for e in timeline] == [
            "open",
            "record_retention",
            "approve",
            "submit_return_tracking",
            "record_receipt",
            "record_inspection",
            "refund",
        ]
        assert {e["actor"] for e in timeline} == {"storefront", "support", "warehouse"}

        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        line = next(li for li in order["lines"] if li["line_id"] == "L1")
        assert line["compensated"] == "119.00"
        assert line["remaining_allowance"] == "119.00"
