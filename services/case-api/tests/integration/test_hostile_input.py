"""Inputs that answered 5xx (issue 11, item 5) answer 4xx problem+json and change nothing, on SQLite and
PostgreSQL: money beyond what the columns hold, times that overflow when converted to UTC, NUL characters,
ids that no case can reference, bodies of any size; and money stays exact in both databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.migrations import alembic_config, upgrade
from aftersales_shared.pagination import encode_cursor
from case_api.config import Settings
from case_api.main import upload_limit
from case_api_checks import assert_problem, error_fields, unchanged
from case_api_testing import SERVICE_DIR, Api, order_body, running_api

CASHBACK = {
    "order_id": "o-1",
    "line_id": "L1",
    "reason": "other",
    "amount": "20.00",
    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
}
# Each as JSON text, spliced into a body: integers of 10^19 and more, floats, exponents, NaN and Infinity
# (literals Python's json module reads as floats, and strings), and amounts past the columns or the cap.
HUGE = [
    "10000000000000000000",
    "12345678901234567",
    "-10000000000000000000",
    "10000000000",
    "1e400",
    "-1e400",
    "1e308",
    "NaN",
    "Infinity",
    '"NaN"',
    '"Infinity"',
    '"1e400"',
    '"10000000000.00"',
    '"9999999999.99"',
    '"1000000.01"',
]
# paid_at, signed_at and shipped_at of these overflow when converted to UTC
OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]
SPLICE = "__SPLICE__"


def spliced(body: dict[str, Any], raw: str) -> bytes:
    """`body` as JSON with the string SPLICE replaced by the JSON text `raw`."""
    return json.dumps(body, ensure_ascii=False).replace(f'"{SPLICE}"', raw).encode()


async def send(api: Api, method: str, path: str, who: str, body: bytes) -> Any:
    return await api.call(method, path, who, content=body, headers={"Content-Type": "application/json"})


def with_line(**changes: Any) -> dict[str, Any]:
    body = order_body()
    body["lines"][0].update(changes)
    return body


@pytest.fixture
async def case(any_db_api: Api) -> dict[str, Any]:
    """o-1 pushed, and a refund-only case of 30.00 approved, waiting for its refund."""
    await any_db_api.put_order()
    opened = await any_db_api.open_case(remedy="refund_only", reason="other", amount="30.00")
    assert opened.status_code == 201, opened.text
    approved = await any_db_api.act(opened.json(), "approve")
    assert approved.status_code == 200, approved.text
    return dict(approved.json())


class TestMoneyBeyondWhatIsAccepted:
    async def test_an_order_with_it_is_422_and_unchanged(self, any_db_api: Api) -> None:
        await any_db_api.put_order()
        bodies = {
            "lines.0.unit_price": with_line(unit_price=SPLICE),
            "lines.0.paid_amount": with_line(paid_amount=SPLICE),
            "shipping_fee": order_body(shipping_fee=SPLICE),
        }
        for raw in HUGE:
            for field, body in bodies.items():
                for order_id in ("o-1", "o-2"):  # a change and a creation
                    async with unchanged(any_db_api):
                        response = await send(
                            any_db_api, "PUT", f"/v1/orders/{order_id}", "storefront", spliced(body, raw)
                        )
                    problem = assert_problem(response, 422, "validation_failed")
                    assert field in error_fields(problem), (raw, problem)

    async def test_a_case_a_refund_and_a_cashback_with_it_are_422_and_unchanged(
        self, any_db_api: Api, case: dict[str, Any]
    ) -> None:
        new_case = {
            "order_id": "o-1",
            "lines": [{"line_id": "L2", "quantity": 1}],
            "remedy": "refund_only",
            "reason": "other",
            "amount": SPLICE,
        }
        writes = [
            ("POST", "/v1/cases", "storefront", new_case, "amount"),
            ("POST", f"/v1/cases/{case['id']}/actions/refund", "support", {"amount": SPLICE}, "amount"),
            ("POST", "/v1/cashback-tasks", "support", {**CASHBACK, "amount": SPLICE}, "amount"),
            (
                "POST",
                "/v1/cashback-tasks",
                "support",
                {**CASHBACK, "reason": "shipping_fee", "postage_receipt": SPLICE},
                "postage_receipt",
            ),
        ]
        for raw in HUGE:
            for method, path, who, body, field in writes:
                async with unchanged(any_db_api):
                    response = await send(any_db_api, method, path, who, spliced(body, raw))
                problem = assert_problem(response, 422, "validation_failed")
                assert field in error_fields(problem), (raw, path, problem)

    async def test_the_largest_amount_is_stored_and_read_back_exactly(self, any_db_api: Api) -> None:
        top = "1000000.00"
        lines = [
            {
                **order_body()["lines"][0],
                "line_id": f"L{n}",
                "quantity": 1,
                "unit_price": top,
                "paid_amount": top,
            }
            for n in (1, 2, 3)
        ]
        order = await any_db_api.put_order(lines=lines, shipping_fee=top)
        assert [(line["unit_price"], line["paid_amount"]) for line in order["lines"]] == [(top, top)] * 3
        assert order["shipping_fee"] == top
        opened = await any_db_api.open_case(
            lines=[{"line_id": f"L{n}", "quantity": 1} for n in (1, 2, 3)],
            remedy="return_refund",
            reason="damaged",
        )
        assert opened.status_code == 201, opened.text
        # a case's amount is a sum, which may pass the largest single amount
        assert opened.json()["amount"] == "3000000.00"
        read = (await any_db_api.call("GET", "/v1/orders/o-1", "support")).json()
        assert [line["remaining_allowance"] for line in read["lines"]] == ["0.00"] * 3
        assert [line["compensated"] for line in read["lines"]] == [top] * 3


class TestTimesThatOverflow:
    async def test_order_times_out_of_range_are_422_and_unchanged(self, any_db_api: Api) -> None:
        await any_db_api.put_order()
        for at in OVERFLOWING:
            shipment = {**order_body()["shipment"], "shipped_at": at}
            for body, field in (
                (order_body(paid_at=at), "paid_at"),
                (order_body(signed_at=at), "signed_at"),
                (order_body(shipment=shipment), "shipment.shipped_at"),
            ):
                for order_id in ("o-1", "o-2"):
                    async with unchanged(any_db_api):
                        response = await any_db_api.call(
                            "PUT", f"/v1/orders/{order_id}", "storefront", json=body
                        )
                    assert field in error_fields(assert_problem(response, 422, "validation_failed"))

    async def test_time_filters_out_of_range_are_422(self, any_db_api: Api) -> None:
        for at in OVERFLOWING:
            for path, name in (
                ("/v1/cases", "created_after"),
                ("/v1/registers/cashback", "since"),
                ("/v1/registers/retention", "since"),
                ("/v1/registers/logistics-follow-up", "since"),
            ):
                response = await any_db_api.call("GET", path, "support", params={name: at})
                assert f"query.{name}" in error_fields(assert_problem(response, 422, "validation_failed"))


class TestNulCharacters:
    """PostgreSQL text cannot hold NUL: each of these failed there with a 500."""

    async def test_nul_in_any_text_of_a_body_is_422_and_unchanged(
        self, any_db_api: Api, case: dict[str, Any]
    ) -> None:
        buyer = {**order_body()["buyer"], "name": "张\x00三"}
        new_case = {
            "order_id": "o-1",
            "lines": [{"line_id": "L2", "quantity": 1}],
            "remedy": "refund_only",
            "reason": "other",
            "amount": "5.00",
        }
        writes = [
            ("PUT", "/v1/orders/o-1", "storefront", order_body(buyer=buyer), "buyer.name"),
            ("PUT", "/v1/orders/o-2", "storefront", with_line(name="T恤\x00"), "lines.0.name"),
            ("POST", "/v1/cases", "storefront", {**new_case, "description": "坏了\x00"}, "description"),
            ("POST", "/v1/cases", "storefront", {**new_case, "evidence_ids": ["evd_\x00"]}, "evidence_ids.0"),
            (
                "POST",
                f"/v1/cases/{case['id']}/actions/reject",
                "support",
                {"reason_code": "late", "message": "不\x00行"},
                "message",
            ),
            (
                "POST",
                "/v1/cashback-tasks",
                "support",
                {**CASHBACK, "payee": {"alipay_account": "a@example.com", "name": "\x00"}},
                "payee.name",
            ),
            ("POST", "/v1/cashback-tasks", "support", {**CASHBACK, "note": "\x00"}, "note"),
        ]
        for method, path, who, body, field in writes:
            async with unchanged(any_db_api):
                response = await any_db_api.call(method, path, who, json=body)
            problem = assert_problem(response, 422, "validation_failed")
            assert field in error_fields(problem), (path, problem)

    async def test_a_cursor_that_is_no_id_is_400(self, any_db_api: Api) -> None:
        for last_id in ("\x00", "case_\x001", "c" * 65):
            cursor = encode_cursor(last_id)
            for path in ("/v1/cases", "/v1/cashback-tasks"):
                response = await any_db_api.call("GET", path, "support", params={"cursor": cursor})
                assert_problem(response, 400, "invalid_cursor")

    async def test_nul_in_a_filter_is_422(self, any_db_api: Api) -> None:
        for path, name in (
            ("/v1/cases", "order_id"),
            ("/v1/cases", "shop_id"),
            ("/v1/cashback-tasks", "case_id"),
        ):
            response = await any_db_api.call("GET", path, "support", params={name: "o-\x001"})
            assert f"query.{name}" in error_fields(assert_problem(response, 422, "validation_failed"))


# Ids no case can reference: the pattern and width the bodies take (case-api schemas' Id).
BAD_ORDER_IDS = ["o" * 65, "o" * 5000, "o%00", "%00", "订单-1", "o-😀", "o 1", "o,1"]


class TestPathIds:
    async def test_an_order_id_no_case_can_reference_is_refused_and_nothing_is_stored(
        self, any_db_api: Api
    ) -> None:
        for order_id in BAD_ORDER_IDS:
            async with unchanged(any_db_api):
                put = await any_db_api.call("PUT", f"/v1/orders/{order_id}", "storefront", json=order_body())
            assert "path.order_id" in error_fields(assert_problem(put, 422, "validation_failed")), order_id
            for path in (f"/v1/orders/{order_id}", f"/v1/orders/{order_id}/after-sales-options"):
                got = await any_db_api.call("GET", path, "support")
                assert_problem(got, 422, "validation_failed")

    async def test_the_widest_id_the_bodies_take_is_accepted(self, any_db_api: Api) -> None:
        order_id = "O.1:a-" + "9" * 58
        assert len(order_id) == 64
        await any_db_api.put_order(order_id)
        opened = await any_db_api.open_case(order_id=order_id)
        assert opened.status_code == 201, opened.text

    async def test_case_and_task_ids_beyond_their_columns_are_422(
        self, any_db_api: Api, case: dict[str, Any]
    ) -> None:
        for bad in ("c" * 41, "case_%00", "case_😀"):
            for method, path in (
                ("GET", f"/v1/cases/{bad}"),
                ("GET", f"/v1/cases/{bad}/timeline"),
                ("POST", f"/v1/cases/{bad}/actions/approve"),
                ("GET", f"/v1/cashback-tasks/{bad}"),
                ("POST", f"/v1/cashback-tasks/{bad}/approve"),
                ("POST", f"/v1/cashback-tasks/{bad}/reject"),
            ):
                async with unchanged(any_db_api):
                    response = await any_db_api.call(method, path, "support")
                assert_problem(response, 422, "validation_failed")

    async def test_a_new_order_id_in_a_body_is_held_to_the_same_pattern(self, any_db_api: Api) -> None:
        await any_db_api.put_order()
        for bad in ("o" * 65, "o 1", "o\x001"):
            async with unchanged(any_db_api):
                response = await any_db_api.open_case(
                    remedy="price_protection", reason="price_drop", new_order_id=bad, new_unit_price="99.00"
                )
            assert "new_order_id" in error_fields(assert_problem(response, 422, "validation_failed"))


@pytest.fixture
async def small_limits_api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        data_dir=tmp_path, max_body_bytes=8192, evidence_max_bytes=20_000, evidence_max_image_bytes=10_000
    )
    async for running in running_api(settings, tmp_path):
        yield running


class TestBodyLimit:
    async def test_a_json_body_over_the_limit_is_413_and_unchanged(self, small_limits_api: Api) -> None:
        api = small_limits_api
        await api.put_order()  # an ordinary body is well within it
        padded = order_body(buyer={**order_body()["buyer"], "address": "路" * 3000})
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-1", "storefront", json=padded)
        assert assert_problem(response, 413, "body_too_large")["limit"] == 8192

    async def test_a_streamed_body_of_200_mb_is_cut_off_after_the_limit(self, small_limits_api: Api) -> None:
        api, pulled = small_limits_api, 0

        async def two_hundred_mb() -> AsyncIterator[bytes]:
            nonlocal pulled
            yield b'{"shop_id": "'
            for _ in range(200 * 1024):
                pulled += 1024
                yield b"a" * 1024

        async with unchanged(api):
            response = await api.call(
                "PUT",
                "/v1/orders/o-1",
                "storefront",
                content=two_hundred_mb(),
                headers={"Content-Type": "application/json"},
            )
        assert_problem(response, 413, "body_too_large")
        assert pulled <= 8192 + 1024, f"{pulled} bytes read of the body"

    async def test_an_upload_has_the_evidence_limit_not_the_json_one(self, small_limits_api: Api) -> None:
        api = small_limits_api
        assert upload_limit(api.app.state.settings) == 20_000 + 64 * 1024
        big = b"\xff\xd8\xff" + b"\x00" * 30_000  # past the JSON limit, within the upload limit
        files = {"file": ("big.jpg", big, "image/jpeg")}
        answered = await api.call("POST", "/v1/evidence", "storefront", files=files)
        assert answered.json()["code"] != "body_too_large", answered.text  # the upload itself is judged
        huge = {"file": ("huge.jpg", b"\xff\xd8\xff" + b"\x00" * 200_000, "image/jpeg")}
        async with unchanged(api):
            response = await api.call("POST", "/v1/evidence", "storefront", files=huge)
        assert assert_problem(response, 413, "body_too_large")["limit"] == upload_limit(
            api.app.state.settings
        )


class TestMoneyInSQLiteMigrates:
    async def test_existing_amounts_become_cents_and_back(self, api: Api, tmp_path: Path) -> None:
        """Revision money_in_cents rewrites what SQLite held as NUMERIC (a float) into integer cents; its
        downgrade gives the old form back."""
        from alembic import command
        from alembic.script import ScriptDirectory

        await api.put_order(
            lines=[{**order_body()["lines"][0], "unit_price": "129.29", "paid_amount": "0.29"}]
        )
        url = api.app.state.settings.sqlalchemy_url
        config = alembic_config(SERVICE_DIR, url)
        (revision,) = [
            r
            for r in ScriptDirectory.from_config(config).walk_revisions()
            if "money_in_cents" in (r.path or "")
        ]
        database = str(tmp_path / "case_api.db")

        def stored() -> list[tuple[Any, ...]]:
            with sqlite3.connect(database) as conn:
                return conn.execute(
                    "SELECT unit_price, paid_amount FROM order_lines WHERE line_id = 'L1'"
                ).fetchall()

        assert stored() == [(12929, 29)]
        await asyncio.to_thread(command.downgrade, config, str(revision.down_revision))
        assert stored() == [(129.29, 0.29)]
        await upgrade(SERVICE_DIR, url)
        assert stored() == [(12929, 29)]
        line = (await api.call("GET", "/v1/orders/o-1", "support")).json()["lines"][0]
        assert (line["unit_price"], line["paid_amount"]) == ("129.29", "0.29")
