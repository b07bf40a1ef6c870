"""What case-api must not leak (issue 11, item 6): buyer data in the log of a 500 (SQL parameters, the
database's own error details), whether another shop's order, case or cashback task exists (its 404 is the
missing one's, byte for byte), and formulas in the registers' CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any

import httpx
import pytest
from aftersales_shared.logging import JsonFormatter
from aftersales_testing import this_request
from case_api.api import registers
from case_api_checks import assert_problem
from case_api_testing import Api, order_body
from sqlalchemy import text

# The buyer as storefronts send it: a phone with country code and dashes, a full street address.
BUYER = {
    "id": "buyer-leak",
    "name": "欧阳娜娜",
    "phone": "+86 139-8765-4321",
    "address": "广东省深圳市南山区科技园路 8 栋 1201 室",
    "alipay_account": "ouyang.nana@example.com",
}
# What must appear nowhere in a log line, in any of the forms it was sent or stored in.
SECRETS = ("欧阳娜娜", "娜娜", "139-8765-4321", "13987654321", "8765", "科技园路", "1201 室", "ouyang.nana")


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(JsonFormatter().format(r) for r in caplog.records)


class TestServerErrorLogs:
    async def test_a_500_from_the_database_logs_no_buyer_data(
        self, any_db_api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Force a database error whose statement carries the buyer (a unique index on the buyer's phone,
        so a second order of the same buyer fails on INSERT): the 500's log line says what failed, with
        neither the statement's parameters nor the key PostgreSQL quotes in its DETAIL."""
        api = any_db_api
        async with api.app.state.sessions() as session:
            dialect = session.get_bind().dialect.name
            phone = "(buyer->>'phone')" if dialect == "postgresql" else "json_extract(buyer, '$.phone')"
            await session.exec(text(f"CREATE UNIQUE INDEX leak_test_phone ON orders (({phone}))"))  # type: ignore[call-overload]
            await session.commit()
        await api.put_order("o-1", buyer=BUYER)
        caplog.set_level(logging.INFO)
        caplog.clear()
        response = await api.call("PUT", "/v1/orders/o-2", "storefront", json=order_body(buyer=BUYER))
        assert_problem(response, 500, "internal_error")
        assert not [s for s in SECRETS if s in response.text]

        [crash] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
        assert crash.exc_info is not None
        raw = str(crash.exc_info[1])  # what any handler would print, before our formatter masks it
        assert "IntegrityError" in type(crash.exc_info[1]).__name__ + raw
        assert "[SQL parameters hidden due to hide_parameters=True]" in raw
        assert not [s for s in SECRETS if s in raw], raw

        line = json.loads(JsonFormatter().format(crash))
        assert line["path"] == "/v1/orders/o-2" and "IntegrityError" in line["error"]
        if dialect == "postgresql":  # asyncpg's own error carries DETAIL: Key (...)=(the phone)
            assert "already exists" in line["error"] and "=(***)" in line["error"]
        everything = log_text(caplog)
        assert not [s for s in SECRETS if s in everything], everything


async def other_and_missing(
    api: Api, who: str, method: str, path: str, real: str, missing: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    """The answers to `path` for another shop's `real` id and for a `missing` one (the same key)."""
    other = await api.call(method, path.format(real), who, **kwargs)
    absent = await api.call(method, path.format(missing), who, **kwargs)
    return other, absent


def assert_same_404(other: httpx.Response, absent: httpx.Response, real: str, missing: str) -> None:
    assert_problem(other, 404, "not_found")
    assert_problem(absent, 404, "not_found")
    assert other.headers["content-type"] == absent.headers["content-type"]
    # Byte for byte, once the id the caller chose is the same (and each names its own request as `instance`).
    assert this_request(other) == this_request(absent).replace(missing.encode(), real.encode()), (
        other.text,
        absent.text,
    )


def a_missing(ident: str) -> str:
    return ident[:-1] + ("x" if ident[-1] != "x" else "y")


class TestAnotherShopsThingIsNotFound:
    async def test_an_order(self, api: Api) -> None:
        """The very same requests, before and after shop-a's order exists: shop-b's keys see no difference
        (and a PUT of shop-b over it answers the same 404)."""
        reads = (("/v1/orders/o-1", "support_b"), ("/v1/orders/o-1/after-sales-options", "storefront_b"))
        before = [await api.call("GET", path, who) for path, who in reads]
        await api.put_order("o-1")
        after = [await api.call("GET", path, who) for path, who in reads]
        for absent, other in zip(before, after, strict=True):
            assert_same_404(other, absent, "o-1", "o-1")
        over = await api.call("PUT", "/v1/orders/o-1", "storefront_b", json=order_body(shop_id="shop-b"))
        assert_same_404(over, before[0], "o-1", "o-1")
        assert over.json()["detail"] == "no order 'o-1' here"

    async def test_an_order_named_in_a_new_case_or_cashback_task(self, api: Api) -> None:
        await api.put_order("o-1")
        case = {"lines": [{"line_id": "L1", "quantity": 1}], "remedy": "return_refund", "reason": "no_reason"}
        cashback = {
            "line_id": "L1",
            "reason": "price_difference",
            "amount": "5.00",
            "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
        }
        for who, path, body in (
            ("storefront_b", "/v1/cases", case),
            ("support_b", "/v1/cashback-tasks", cashback),
        ):
            other = await api.call("POST", path, who, json={**body, "order_id": "o-1"})
            absent = await api.call("POST", path, who, json={**body, "order_id": "o-2"})
            assert_same_404(other, absent, "o-1", "o-2")

    async def test_a_case(self, api: Api) -> None:
        await api.put_order()
        case = (await api.open_case()).json()
        real, missing = case["id"], a_missing(case["id"])
        for method, path, kwargs in (
            ("GET", "/v1/cases/{}", {}),
            ("GET", "/v1/cases/{}/timeline", {}),
            ("POST", "/v1/cases/{}/actions/approve", {"json": {"expected_version": case["version"]}}),
        ):
            other, absent = await other_and_missing(api, "support_b", method, path, real, missing, **kwargs)
            assert_same_404(other, absent, real, missing)
        assert other.json()["detail"] == f"no case {real!r} here"

    async def test_a_cashback_task(self, api: Api) -> None:
        await api.put_order()
        created = await api.call(
            "POST",
            "/v1/cashback-tasks",
            "support",
            json={
                "order_id": "o-1",
                "line_id": "L1",
                "reason": "price_difference",
                "amount": "5.00",
                "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
            },
        )
        assert created.status_code == 201, created.text
        real = created.json()["id"]
        missing = a_missing(real)
        for method, path in (
            ("GET", "/v1/cashback-tasks/{}"),
            ("POST", "/v1/cashback-tasks/{}/approve"),
            ("POST", "/v1/cashback-tasks/{}/reject"),
        ):
            other, absent = await other_and_missing(api, "support_b", method, path, real, missing)
            assert_same_404(other, absent, real, missing)
        assert other.json()["title"] == "cashback task not found"


KEYS = {c.header: c.key for c in (*registers.RETENTION, *registers.CASHBACK)}


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    """The rows keyed by the register's JSON keys (the CSV's headers are Chinese)."""
    assert response.status_code == 200, response.text
    rows = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    return [{KEYS[header]: value for header, value in row.items()} for row in rows]


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "\t=1", "\r=1"]


class TestRegisterCsv:
    @pytest.mark.parametrize("formula", FORMULAS)
    async def test_retention_text_that_a_spreadsheet_would_run_is_quoted(
        self, api: Api, formula: str
    ) -> None:
        await api.put_order()
        case = (await api.open_case()).json()
        response = await api.act(
            case, "record_retention", offer="gift", outcome="declined", real_reason=formula
        )
        assert response.status_code == 200, response.text
        stored = (await api.call("GET", "/v1/registers/retention", "ops")).json()["items"][0]["real_reason"]
        (row,) = csv_rows(await api.call("GET", "/v1/registers/retention", "ops", params={"format": "csv"}))
        assert row["real_reason"] == "'" + stored and stored[:1] in "=+-@\t\r"
        assert (row["offer"], row["outcome"]) == ("gift", "declined")  # the others as they are

    async def test_a_payee_that_a_spreadsheet_would_run_is_quoted(self, api: Api) -> None:
        await api.put_order()
        for name, account in (("=1+2", "-13812345678"), ("@me", "+86 138 0000 0000"), ("张三", "a@b.cn")):
            response = await api.call(
                "POST",
                "/v1/cashback-tasks",
                "support",
                json={
                    "order_id": "o-1",
                    "line_id": "L1",
                    "reason": "price_difference",
                    "amount": "1.00",
                    "payee": {"alipay_account": account, "name": name},
                },
            )
            assert response.status_code == 201, response.text
        rows = csv_rows(await api.call("GET", "/v1/registers/cashback", "ops", params={"format": "csv"}))
        assert sorted((r["payee_name"], r["payee_account"]) for r in rows) == [
            ("'=1+2", "'-13812345678"),
            ("'@me", "'+86 138 0000 0000"),
            ("张三", "a@b.cn"),
        ]
