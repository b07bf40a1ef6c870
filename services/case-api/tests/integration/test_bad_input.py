"""Bad input is refused with the right problem+json, and a refused write changes nothing (API.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from case_api_checks import assert_problem, error_fields, unchanged, upload
from case_api_testing import JPEG, MP4, PNG, Api, image, order_body

CASHBACK = {
    "order_id": "o-1",
    "line_id": "L1",
    "reason": "other",
    "amount": "20.00",
    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
}
CASE = {
    "order_id": "o-1",
    "lines": [{"line_id": "L1", "quantity": 1}],
    "remedy": "return_refund",
    "reason": "no_reason",
}


def with_line(**changes: Any) -> dict[str, Any]:
    body = order_body()
    body["lines"][0].update(changes)
    return body


@pytest.fixture
async def case(api: Api) -> dict[str, Any]:
    """o-1 pushed, and a no-reason return of one L1 waiting in retention."""
    await api.put_order()
    response = await api.open_case()
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
async def task(api: Api, case: dict[str, Any]) -> dict[str, Any]:
    response = await api.call("POST", "/v1/cashback-tasks", "support", json=CASHBACK)
    assert response.status_code == 201, response.text
    return dict(response.json())


class TestMalformedJson:
    WRITES = [
        ("PUT", "/v1/orders/o-1"),
        ("POST", "/v1/cases"),
        ("POST", "/v1/cases/{case}/actions/approve"),
        ("POST", "/v1/cashback-tasks"),
        ("POST", "/v1/cashback-tasks/{task}/approve"),
        ("POST", "/v1/cashback-tasks/{task}/reject"),
    ]

    @pytest.mark.parametrize(("method", "path"), WRITES)
    @pytest.mark.parametrize(
        "raw",
        [b'{"order_id": "o-1",', b"not json", b"{'single': 'quotes'}", b"\xff\xfe{}"],
        ids=["truncated", "text", "single-quotes", "bad-utf8"],
    )
    async def test_body_that_is_not_json_is_400(
        self, api: Api, case: dict[str, Any], task: dict[str, Any], method: str, path: str, raw: bytes
    ) -> None:
        async with unchanged(api):
            response = await api.call(
                method,
                path.format(case=case["id"], task=task["id"]),
                "admin",
                content=raw,
                headers={"Content-Type": "application/json"},
            )
        body = assert_problem(response, 400, "malformed_json")
        assert body["type"].endswith("malformed_json")


class TestOrderFields:
    @pytest.mark.parametrize(
        ("body", "fields"),
        [
            (with_line(quantity="two"), {"lines.0.quantity"}),
            (with_line(quantity=0), {"lines.0.quantity"}),
            (order_body(platform="amazon"), {"platform"}),
            (order_body(paid_at="2026-11-01T10:00:00"), {"paid_at"}),  # no offset
            (order_body(paid_at="yesterday"), {"paid_at"}),
            ({k: v for k, v in order_body().items() if k not in ("buyer", "lines")}, {"buyer", "lines"}),
            (order_body(lines=[]), {"lines"}),
            (order_body(coupon="FREE"), {"coupon"}),
            (with_line(colour="red"), {"lines.0.colour"}),
            (order_body(shipping_insurance="perhaps"), {"shipping_insurance"}),
            (order_body(shop_id="shop a/../b"), {"shop_id"}),
        ],
        ids=[
            "quantity-type",
            "quantity-zero",
            "platform",
            "naive-time",
            "not-a-time",
            "missing",
            "no-lines",
            "extra",
            "extra-in-line",
            "bool",
            "id-pattern",
        ],
    )
    async def test_wrong_or_missing_fields_are_422_listing_them(
        self, api: Api, body: dict[str, Any], fields: set[str]
    ) -> None:
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=body)
        problem = assert_problem(response, 422, "validation_failed")
        assert fields <= error_fields(problem), problem

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (with_line(unit_price=129.0), "lines.0.unit_price"),
            (with_line(paid_amount="238.001"), "lines.0.paid_amount"),
            (with_line(unit_price="-1.00"), "lines.0.unit_price"),
            (with_line(paid_amount="NaN"), "lines.0.paid_amount"),
            (order_body(shipping_fee="-10.00"), "shipping_fee"),
            (order_body(shipping_fee=10.5), "shipping_fee"),
        ],
        ids=["float", "three-decimals", "negative", "nan", "negative-fee", "float-fee"],
    )
    async def test_money_is_a_two_place_non_negative_decimal_string(
        self, api: Api, body: dict[str, Any], field: str
    ) -> None:
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=body)
        problem = assert_problem(response, 422, "validation_failed")
        assert field in error_fields(problem), problem

    async def test_signed_before_paid_and_duplicate_lines_are_refused(self, api: Api) -> None:
        lines = order_body()["lines"]
        for body in (
            order_body(signed_at="2026-10-01T00:00:00+08:00"),
            order_body(lines=[lines[0], lines[0]]),
        ):
            async with unchanged(api):
                response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=body)
            assert_problem(response, 422, "validation_failed")

    async def test_dropping_a_line_that_has_a_case_is_409_and_keeps_the_order(
        self, api: Api, case: dict[str, Any]
    ) -> None:
        body = order_body()
        body["lines"] = body["lines"][1:]
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=body)
        assert_problem(response, 409, "line_in_use")

    async def test_dropping_a_line_that_has_a_cashback_task_is_409(self, api: Api) -> None:
        await api.put_order()
        created = await api.call("POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "line_id": "L2"})
        assert created.status_code == 201
        body = order_body()
        body["lines"] = body["lines"][:1]
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=body)
        assert_problem(response, 409, "line_in_use")


class TestCaseFields:
    @pytest.mark.parametrize(
        ("changes", "fields"),
        [
            ({"remedy": "teleport"}, {"remedy"}),
            ({"reason": "bored"}, {"reason"}),
            ({"lines": [{"line_id": "L1", "quantity": "one"}]}, {"lines.0.quantity"}),
            ({"lines": [{"line_id": "L1", "quantity": 0}]}, {"lines.0.quantity"}),
            ({"lines": []}, {"lines"}),
            ({"lines": None}, {"lines"}),
            ({"amount": 10.5, "remedy": "refund_only", "reason": "other"}, {"amount"}),
            ({"amount": "10.005", "remedy": "refund_only", "reason": "other"}, {"amount"}),
            ({"amount": "-10.00", "remedy": "refund_only", "reason": "other"}, {"amount"}),
            ({"evidence_ids": "evd_1"}, {"evidence_ids"}),
            ({"urgent": True}, {"urgent"}),
            ({"new_unit_price": "-1.00"}, {"new_unit_price"}),
        ],
        ids=[
            "remedy",
            "reason",
            "quantity-type",
            "quantity-zero",
            "no-lines",
            "null-lines",
            "float-amount",
            "three-decimals",
            "negative-amount",
            "ids-not-list",
            "extra",
            "negative-price",
        ],
    )
    async def test_wrong_fields_are_422_listing_them(
        self, api: Api, changes: dict[str, Any], fields: set[str]
    ) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.call("POST", "/v1/cases", "storefront", json={**CASE, **changes})
        problem = assert_problem(response, 422, "validation_failed")
        assert fields <= error_fields(problem), problem

    async def test_missing_fields_are_all_listed(self, api: Api) -> None:
        async with unchanged(api):
            response = await api.call("POST", "/v1/cases", "storefront", json={"description": "坏了"})
        problem = assert_problem(response, 422, "validation_failed")
        assert {"order_id", "lines", "remedy", "reason"} <= error_fields(problem)

    @pytest.mark.parametrize("remedy", ["exchange", "reship"])
    async def test_an_amount_on_a_remedy_that_moves_no_money_is_422(self, api: Api, remedy: str) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.open_case(remedy=remedy, reason="damaged", amount="10.00")
        problem = assert_problem(response, 422, "validation_failed")
        assert "amount" in error_fields(problem)


class TestActionAndCashbackFields:
    @pytest.mark.parametrize(
        ("action", "body", "fields"),
        [
            ("record_retention", {"offer": "bribe", "outcome": "declined"}, {"offer"}),
            ("record_retention", {"offer": "coupon", "outcome": "maybe"}, {"outcome"}),
            ("record_retention", {"offer": "coupon", "outcome": "declined", "mood": "angry"}, {"mood"}),
            ("record_retention", {"expected_version": "one"}, {"expected_version"}),
            ("record_retention", {"expected_version": 0}, {"expected_version"}),
            ("refund", {"amount": 119.0}, {"amount"}),
            ("record_inspection", {"passed": "perhaps"}, {"passed"}),
        ],
        ids=["offer", "outcome", "extra", "version-type", "version-range", "float-refund", "bool"],
    )
    async def test_action_bodies_are_validated(
        self, api: Api, case: dict[str, Any], action: str, body: dict[str, Any], fields: set[str]
    ) -> None:
        async with unchanged(api):
            response = await api.call(
                "POST", f"/v1/cases/{case['id']}/actions/{action}", "support", json=body
            )
        problem = assert_problem(response, 422, "validation_failed")
        assert fields <= error_fields(problem), problem

    @pytest.mark.parametrize(
        ("action", "body", "field"),
        [
            ("record_retention", {"offer": "coupon"}, "outcome"),
            ("reject", {}, "reason_code"),
        ],
    )
    async def test_an_actions_own_required_field(
        self, api: Api, case: dict[str, Any], action: str, body: dict[str, Any], field: str
    ) -> None:
        async with unchanged(api):
            response = await api.act(case, action, **body)
        problem = assert_problem(response, 422, "validation_failed")
        assert field in error_fields(problem)

    async def test_an_unknown_action_is_refused(self, api: Api, case: dict[str, Any]) -> None:
        async with unchanged(api):
            response = await api.act(case, "teleport")
        assert_problem(response, 422, "validation_failed")

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"amount": 20.0}, "amount"),
            ({"amount": "20.001"}, "amount"),
            ({"amount": "-20.00"}, "amount"),
            ({"amount": "0.05"}, "amount"),
            ({"reason": "gift"}, "reason"),
            ({"payee": None}, "payee"),
            ({"payee": {"name": "张三"}}, "payee.alipay_account"),
            ({"tip": "1.00"}, "tip"),
        ],
        ids=[
            "float",
            "three-decimals",
            "negative",
            "below-minimum",
            "reason",
            "no-payee",
            "no-account",
            "extra",
        ],
    )
    async def test_cashback_fields(
        self, api: Api, case: dict[str, Any], changes: dict[str, Any], field: str
    ) -> None:
        async with unchanged(api):
            response = await api.call("POST", "/v1/cashback-tasks", "support", json={**CASHBACK, **changes})
        problem = assert_problem(response, 422, "validation_failed")
        assert field in error_fields(problem), problem

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": "0"},
            {"limit": "201"},
            {"limit": "many"},
            {"created_after": "2026-11-01T00:00:00"},
            {"remedy": "teleport"},
            {"status": "teleported"},
        ],
    )
    async def test_list_filters_are_validated(self, api: Api, params: dict[str, str]) -> None:
        response = await api.call("GET", "/v1/cases", "support", params=params)
        problem = assert_problem(response, 422, "validation_failed")
        assert set(params) <= {f.removeprefix("query.") for f in error_fields(problem)}


class TestUnknownIds:
    async def test_unknown_order(self, api: Api) -> None:
        for path in ("/v1/orders/nope", "/v1/orders/nope/after-sales-options"):
            assert_problem(await api.call("GET", path, "support"), 404, "not_found")
        async with unchanged(api):
            opened = await api.call("POST", "/v1/cases", "storefront", json={**CASE, "order_id": "nope"})
            cashback = await api.call(
                "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "order_id": "nope"}
            )
        assert_problem(opened, 404, "not_found")
        assert_problem(cashback, 404, "not_found")

    async def test_unknown_case(self, api: Api, case: dict[str, Any]) -> None:
        for path in ("/v1/cases/case_nope", "/v1/cases/case_nope/timeline"):
            assert_problem(await api.call("GET", path, "support"), 404, "not_found")
        async with unchanged(api):
            response = await api.act({"id": "case_nope", "version": 1}, "approve")
            cashback = await api.call(
                "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "case_id": "case_nope"}
            )
        assert_problem(response, 404, "not_found")
        assert_problem(cashback, 404, "not_found")

    async def test_unknown_evidence(self, api: Api, case: dict[str, Any]) -> None:
        real = await upload(api, image(1))
        async with unchanged(api):
            opened = await api.open_case(evidence_ids=[real, "evd_nope"])
            attached = await api.act(case, "attach_evidence", "storefront", evidence_ids=["evd_nope"])
        for response in (opened, attached):
            problem = assert_problem(response, 422, "unknown_evidence")
            assert error_fields(problem) == {"evidence_ids"}
            assert "evd_nope" in problem["detail"]

    async def test_unknown_cashback_task(self, api: Api) -> None:
        assert_problem(await api.call("GET", "/v1/cashback-tasks/cb_nope", "support"), 404, "not_found")
        for decision in ("approve", "reject"):
            async with unchanged(api):
                response = await api.call("POST", f"/v1/cashback-tasks/cb_nope/{decision}", "support")
            assert_problem(response, 404, "not_found")

    async def test_unknown_line(self, api: Api, case: dict[str, Any]) -> None:
        async with unchanged(api):
            cashback = await api.call(
                "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "line_id": "L9"}
            )
            opened = await api.open_case(lines=[{"line_id": "L9", "quantity": 1}])
        assert "line_id" in error_fields(assert_problem(cashback, 422, "validation_failed"))
        assert assert_problem(opened, 422, "policy_refused")["rule"] == "R-ORDER-LINE"

    async def test_a_case_of_another_order_on_a_cashback_task(self, api: Api, case: dict[str, Any]) -> None:
        await api.put_order("o-2")
        async with unchanged(api):
            response = await api.call(
                "POST",
                "/v1/cashback-tasks",
                "support",
                json={**CASHBACK, "order_id": "o-2", "case_id": case["id"]},
            )
        assert error_fields(assert_problem(response, 422, "validation_failed")) == {"case_id"}

    async def test_reship_lines_outside_the_case(self, api: Api) -> None:
        await api.put_order()
        photos = [await upload(api, image(n)) for n in range(3)]
        case = (await api.open_case(remedy="reship", reason="damaged", evidence_ids=photos)).json()
        case = (await api.act(case, "approve")).json()
        for lines in ([{"line_id": "L2", "quantity": 1}], [{"line_id": "L1", "quantity": 2}]):
            async with unchanged(api):
                response = await api.act(case, "create_reship", reship_lines=lines)
            assert error_fields(assert_problem(response, 422, "validation_failed")) == {"reship_lines"}

    async def test_unknown_paths_and_methods_are_problems_too(self, api: Api) -> None:
        assert_problem(await api.call("GET", "/v1/refunds", "support"), 404, "not_found")
        assert_problem(await api.call("DELETE", "/v1/cases", "support"), 405, "method_not_allowed")

    async def test_an_unknown_new_order_for_price_protection(self, api: Api) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.open_case(
                remedy="price_protection", reason="price_drop", new_order_id="o-nope"
            )
        assert_problem(response, 404, "not_found")


class TestUploads:
    def stored_files(self, api: Api) -> list[str]:
        folder = api.app.state.settings.data_dir / "evidence"
        return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    async def refused(self, api: Api, files: dict[str, Any], status: int, code: str) -> dict[str, Any]:
        before = self.stored_files(api)
        async with unchanged(api):
            response = await api.call("POST", "/v1/evidence", "storefront", files=files)
        assert self.stored_files(api) == before, "a refused upload left a file behind"
        return assert_problem(response, status, code)

    async def test_an_image_over_the_image_limit_is_413(self, api: Api) -> None:
        api.app.state.settings.evidence_max_image_bytes = 1000
        problem = await self.refused(
            api, {"file": ("big.jpg", JPEG + b"\x00" * 1000, "image/jpeg")}, 413, "file_too_large"
        )
        assert problem["limit"] == 1000

    async def test_a_video_over_the_file_limit_is_413(self, api: Api) -> None:
        api.app.state.settings.evidence_max_bytes = 100_000
        await self.refused(
            api, {"file": ("clip.mp4", MP4 + b"\x00" * 100_000, "video/mp4")}, 413, "file_too_large"
        )

    async def test_at_the_limit_is_accepted(self, api: Api) -> None:
        api.app.state.settings.evidence_max_image_bytes = 1000
        data = JPEG + b"\x00" * (1000 - len(JPEG))
        response = await api.call(
            "POST", "/v1/evidence", "storefront", files={"file": ("ok.jpg", data, "image/jpeg")}
        )
        assert response.status_code == 201
        assert response.json()["size"] == 1000

    @pytest.mark.parametrize(
        ("name", "data", "declared"),
        [
            ("photo.jpg", b"just some text, honest", "image/jpeg"),
            ("photo.png", b"%PDF-1.7\n" + b"\x00" * 64, "image/png"),
            ("photo.jpg", b"GIF89a" + b"\x00" * 64, "image/jpeg"),
        ],
        ids=["text-as-jpg", "pdf-as-png", "gif"],
    )
    async def test_the_type_is_read_from_the_content_not_the_name(
        self, api: Api, name: str, data: bytes, declared: str
    ) -> None:
        await self.refused(api, {"file": (name, data, declared)}, 415, "unsupported_media_type")

    async def test_a_real_png_with_a_wrong_name_is_accepted_as_png(self, api: Api) -> None:
        response = await api.call(
            "POST", "/v1/evidence", "storefront", files={"file": ("notes.txt", PNG, "text/plain")}
        )
        assert response.status_code == 201
        assert (response.json()["content_type"], response.json()["kind"]) == ("image/png", "image")

    async def test_an_empty_file_is_422(self, api: Api) -> None:
        await self.refused(api, {"file": ("empty.jpg", b"", "image/jpeg")}, 422, "empty_file")

    async def test_no_file_field_is_422(self, api: Api) -> None:
        async with unchanged(api):
            response = await api.call("POST", "/v1/evidence", "storefront", files={"photo": ("a.jpg", JPEG)})
        assert "file" in error_fields(assert_problem(response, 422, "validation_failed"))


class TestCompensationCap:
    async def test_cashback_over_the_remaining_allowance_is_refused_with_it(
        self, api: Api, case: dict[str, Any]
    ) -> None:
        # L1 paid 238.00; the open no-reason return reserves 119.00 of it.
        async with unchanged(api):
            response = await api.call(
                "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "amount": "119.01"}
            )
        problem = assert_problem(response, 422, "policy_refused")
        assert problem["rule"] == "R-COMP-CAP"
        assert problem["facts"]["remaining_allowance"] == "119.00"
        assert problem["message_zh"] and problem["message_en"]
        exact = await api.call("POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "amount": "119.00"})
        assert exact.status_code == 201, exact.text

    async def test_a_case_over_the_remaining_allowance_is_refused(self, api: Api) -> None:
        await api.put_order()
        granted = await api.call(
            "POST", "/v1/cashback-tasks", "support", json={**CASHBACK, "amount": "200.00"}
        )
        assert granted.status_code == 201
        async with unchanged(api):
            response = await api.open_case(remedy="refund_only", reason="other", amount="50.00")
        problem = assert_problem(response, 422, "policy_refused")
        assert problem["rule"] == "R-COMP-CAP"
        assert problem["facts"]["remaining_allowance"] == "38.00"

    async def test_a_refund_over_the_approved_amount_is_refused(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case(remedy="refund_only", reason="other", amount="30.00")).json()
        case = (await api.act(case, "approve")).json()
        async with unchanged(api):
            response = await api.act(case, "refund", amount="30.01")
        problem = assert_problem(response, 422, "policy_refused")
        assert (problem["rule"], problem["facts"]["remaining_allowance"]) == ("R-COMP-CAP", "30.00")


class TestVersions:
    async def test_a_stale_expected_version_is_409(self, api: Api, case: dict[str, Any]) -> None:
        moved = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        async with unchanged(api):
            response = await api.act(case, "approve")  # still says version 1
        problem = assert_problem(response, 409, "stale_version")
        assert problem["current_version"] == moved["version"] == 2

    @pytest.mark.parametrize("header", ["1", '"1"', 'W/"1"', "garbage"])
    async def test_a_stale_if_match_is_409(self, api: Api, case: dict[str, Any], header: str) -> None:
        await api.act(case, "record_retention", offer="coupon", outcome="declined")
        async with unchanged(api):
            response = await api.call(
                "POST", f"/v1/cases/{case['id']}/actions/approve", "support", headers={"If-Match": header}
            )
        assert_problem(response, 409, "stale_version")

    async def test_a_current_if_match_is_accepted(self, api: Api, case: dict[str, Any]) -> None:
        response = await api.call(
            "POST",
            f"/v1/cases/{case['id']}/actions/record_retention",
            "support",
            headers={"If-Match": '"1"'},
            json={"offer": "gift", "outcome": "declined"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2

    @pytest.mark.parametrize("decision", ["approve", "reject"])
    async def test_a_stale_cashback_version_is_409(
        self, api: Api, task: dict[str, Any], decision: str
    ) -> None:
        for request in ({"json": {"expected_version": 7}}, {"headers": {"If-Match": '"7"'}}):
            async with unchanged(api):
                response = await api.call(
                    "POST", f"/v1/cashback-tasks/{task['id']}/{decision}", "support", **request
                )
            assert_problem(response, 409, "stale_version")
        current = await api.call(
            "POST", f"/v1/cashback-tasks/{task['id']}/{decision}", "support", headers={"If-Match": '"1"'}
        )
        assert current.status_code == 200, current.text


class TestTransitions:
    @pytest.mark.parametrize(
        ("action", "body"),
        [
            ("approve", {}),
            ("refund", {}),
            ("record_receipt", {}),
            ("close", {}),
            ("create_reship", {}),
            ("submit_return_tracking", {"carrier": "YTO", "tracking_no": "YT1"}),
            ("confirm_intercept", {}),
            ("record_carrier_verdict", {"confirmed": True}),
        ],
    )
    async def test_an_action_the_status_does_not_allow_is_409(
        self, api: Api, case: dict[str, Any], action: str, body: dict[str, Any]
    ) -> None:
        assert case["status"] == "retention"
        async with unchanged(api):
            response = await api.act(case, action, "admin", **body)
        problem = assert_problem(response, 409, "invalid_transition")
        assert problem["status"] == 409

    async def test_a_settled_case_cannot_be_withdrawn_or_rejected(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case(remedy="refund_only", reason="other", amount="10.00")).json()
        case = (await api.act(case, "approve")).json()
        case = (await api.act(case, "refund")).json()
        assert case["status"] == "refunded"
        for action, body in (("withdraw", {}), ("reject", {"reason_code": "late"}), ("refund", {})):
            async with unchanged(api):
                response = await api.act(case, action, **body)
            assert_problem(response, 409, "invalid_transition")


class TestPolicyRefusals:
    async def test_no_reason_return_after_the_window_is_refused_courteously(self, api: Api) -> None:
        await api.put_order()  # signed 2026-11-03 15:20 → window closes 2026-11-11 00:00 (+08:00)
        api.clock.set(datetime.fromisoformat("2026-11-11T00:00:00+08:00"))
        async with unchanged(api):
            response = await api.open_case(description="不想要了")
        problem = assert_problem(response, 422, "policy_refused")
        assert problem["rule"] == "R-BEYOND-7D"
        assert "7天无理由" in problem["message_zh"]
        assert "7-day" in problem["message_en"]
        assert datetime.fromisoformat(problem["facts"]["deadline"]) == datetime.fromisoformat(
            "2026-11-11T00:00:00+08:00"
        )
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert order["subjective_returns_closed"] is True

    async def test_one_second_before_the_deadline_is_accepted(self, api: Api) -> None:
        await api.put_order()
        api.clock.set(datetime.fromisoformat("2026-11-11T00:00:00+08:00") - timedelta(seconds=1))
        response = await api.open_case()
        assert response.status_code == 201, response.text

    async def test_an_excluded_category_is_refused_for_no_reason(self, api: Api) -> None:
        await api.put_order(
            lines=[{**order_body()["lines"][0], "category": "underwear", "no_reason_return": False}]
        )
        async with unchanged(api):
            response = await api.open_case()
        assert assert_problem(response, 422, "policy_refused")["rule"] == "R-7D-EXCLUDED"

    async def test_refund_only_for_received_goods_in_normal_condition(self, api: Api) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.open_case(remedy="refund_only", reason="no_reason", amount="10.00")
        problem = assert_problem(response, 422, "policy_refused")
        assert problem["rule"] == "R-RO-RECEIVED"
        assert problem["facts"]["suggested_remedy"] == "return_refund"

    async def test_more_than_was_ordered(self, api: Api) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.open_case(lines=[{"line_id": "L1", "quantity": 3}])
        problem = assert_problem(response, 422, "policy_refused")
        assert (problem["rule"], problem["facts"]["ordered_quantity"]) == ("R-ORDER-LINE", "2")
