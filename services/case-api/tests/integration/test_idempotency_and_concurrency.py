"""Idempotency-Key on the creating POSTs, optimistic concurrency on actions, and cursor pagination.

The concurrency and pagination tests run on SQLite and on PostgreSQL (`any_db_api`)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from case_api_checks import assert_problem, snapshot, unchanged
from case_api_testing import Api

CASE = {
    "order_id": "o-1",
    "lines": [{"line_id": "L1", "quantity": 1}],
    "remedy": "return_refund",
    "reason": "no_reason",
    "description": "不喜欢",
}
CASHBACK = {
    "order_id": "o-1",
    "line_id": "L2",
    "reason": "shipping_fee",
    "amount": "4.00",
    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
}
ENDPOINTS = [("/v1/cases", CASE, "cases"), ("/v1/cashback-tasks", CASHBACK, "cashback_tasks")]


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


class TestReplay:
    @pytest.mark.parametrize(("path", "body", "table"), ENDPOINTS, ids=["case", "cashback"])
    async def test_a_replay_returns_the_first_answer_and_creates_one(
        self, api: Api, path: str, body: dict[str, Any], table: str
    ) -> None:
        await api.put_order()
        first = await api.call("POST", path, "support", json=body, headers=key("k-1"))
        assert first.status_code == 201, first.text
        before = await snapshot(api)
        api.clock.advance(minutes=5)
        again = await api.call("POST", path, "support", json=body, headers=key("k-1"))
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.headers.get("Idempotent-Replayed") == "true"
        after = await snapshot(api)
        assert after == before
        assert after.counts[table] == 1

    @pytest.mark.parametrize(("path", "body", "table"), ENDPOINTS, ids=["case", "cashback"])
    async def test_without_a_key_each_post_creates(
        self, api: Api, path: str, body: dict[str, Any], table: str
    ) -> None:
        await api.put_order()
        for _ in range(2):
            assert (await api.call("POST", path, "support", json=body)).status_code == 201
        assert (await snapshot(api)).counts[table] == 2

    async def test_a_replayed_refusal_is_the_same_422_even_once_it_would_pass(self, api: Api) -> None:
        await api.put_order(
            lines=[
                {
                    "line_id": "L1",
                    "sku": "BRA-1",
                    "name": "内衣",
                    "quantity": 1,
                    "unit_price": "99.00",
                    "paid_amount": "99.00",
                    "no_reason_return": False,
                }
            ]
        )
        async with unchanged(api):
            first = await api.call("POST", "/v1/cases", "storefront", json=CASE, headers=key("k-refused"))
        assert assert_problem(first, 422, "policy_refused")["rule"] == "R-7D-EXCLUDED"
        await api.put_order()  # the storefront corrects the order: the line is returnable now
        async with unchanged(api):
            again = await api.call("POST", "/v1/cases", "storefront", json=CASE, headers=key("k-refused"))
        assert_problem(again, 422, "policy_refused")
        assert again.json() == first.json()
        fresh = await api.call("POST", "/v1/cases", "storefront", json=CASE, headers=key("k-new"))
        assert fresh.status_code == 201, fresh.text

    async def test_a_replayed_cap_refusal_of_a_cashback_task(self, api: Api) -> None:
        await api.put_order()
        body = {**CASHBACK, "reason": "other", "line_id": "L1", "amount": "300.00"}
        answers = []
        for _ in range(2):
            async with unchanged(api):
                answers.append(
                    await api.call("POST", "/v1/cashback-tasks", "support", json=body, headers=key("cap"))
                )
        assert [r.status_code for r in answers] == [422, 422]
        assert answers[0].json() == answers[1].json()
        assert answers[0].json()["rule"] == "R-COMP-CAP"


class TestKeyReuse:
    @pytest.mark.parametrize(("path", "body", "table"), ENDPOINTS, ids=["case", "cashback"])
    async def test_the_same_key_with_another_body_is_409(
        self, api: Api, path: str, body: dict[str, Any], table: str
    ) -> None:
        await api.put_order()
        assert (await api.call("POST", path, "support", json=body, headers=key("k-1"))).status_code == 201
        changed = {**body, "description": "换个说法"} if table == "cases" else {**body, "amount": "11.00"}
        async with unchanged(api):
            response = await api.call("POST", path, "support", json=changed, headers=key("k-1"))
        assert_problem(response, 409, "idempotency_key_reused")

    async def test_keys_belong_to_the_api_key_that_sent_them(self, api: Api) -> None:
        await api.put_order()
        mine = await api.call("POST", "/v1/cases", "storefront", json=CASE, headers=key("shared"))
        theirs = await api.call("POST", "/v1/cases", "support", json=CASE, headers=key("shared"))
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert mine.json()["id"] != theirs.json()["id"]
        assert (await snapshot(api)).counts["cases"] == 2

    async def test_another_shops_key_cannot_read_an_answer_through_a_key(self, api: Api) -> None:
        await api.put_order()
        assert (
            await api.call("POST", "/v1/cases", "storefront", json=CASE, headers=key("k"))
        ).status_code == 201
        other = await api.call("POST", "/v1/cases", "storefront_b", json=CASE, headers=key("k"))
        assert_problem(other, 404, "not_found")

    @pytest.mark.parametrize("value", ["", "x" * 201])
    async def test_an_empty_or_overlong_key_is_400(self, api: Api, value: str) -> None:
        await api.put_order()
        async with unchanged(api):
            response = await api.call("POST", "/v1/cases", "support", json=CASE, headers=key(value))
        assert_problem(response, 400, "invalid_idempotency_key")

    async def test_concurrent_posts_with_one_key_create_one_case(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        answers = await asyncio.gather(
            *[api.call("POST", "/v1/cases", "support", json=CASE, headers=key("race")) for _ in range(4)]
        )
        assert {r.status_code for r in answers} == {201}
        assert len({r.json()["id"] for r in answers}) == 1
        assert (await snapshot(api)).counts["cases"] == 1


class TestConcurrentActions:
    async def test_two_actions_on_one_version_one_wins(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        case = (await api.open_case()).json()
        case = (await api.act(case, "record_retention", offer="coupon", outcome="declined")).json()
        approve, reject = await asyncio.gather(
            api.act(case, "approve"), api.act(case, "reject", reason_code="no_stock")
        )
        statuses = sorted([approve.status_code, reject.status_code])
        assert statuses == [200, 409], (approve.text, reject.text)
        loser = approve if approve.status_code == 409 else reject
        assert_problem(loser, 409, "stale_version")
        winner = approve if approve.status_code == 200 else reject
        now = (await api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert (now["status"], now["version"]) == (winner.json()["status"], 3)
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        assert [e["action"] for e in timeline].count("approve") + [e["action"] for e in timeline].count(
            "reject"
        ) == 1

    async def test_the_same_action_twice_at_once_happens_once(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        case = (await api.open_case(remedy="refund_only", reason="other", amount="20.00")).json()
        case = (await api.act(case, "approve")).json()
        first, second = await asyncio.gather(api.act(case, "refund"), api.act(case, "refund"))
        assert sorted([first.status_code, second.status_code]) == [200, 409]
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert order["lines"][0]["compensated"] == "20.00"

    async def test_approving_a_cashback_task_twice_at_once_emits_once(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        task = (await api.call("POST", "/v1/cashback-tasks", "support", json=CASHBACK)).json()
        path = f"/v1/cashback-tasks/{task['id']}/approve"
        answers = await asyncio.gather(api.call("POST", path, "support"), api.call("POST", path, "support"))
        assert sorted(r.status_code for r in answers) == [200, 409]
        after = await snapshot(api)
        assert after.counts["ledger_entries"] == 1  # reserved at creation, not again on approval
        assert after.tasks[task["id"]] == ("approved", 2)


class TestPagination:
    async def make_cases(self, api: Api, count: int) -> list[str]:
        """`count` cases on distinct orders, oldest first."""
        ids = []
        for n in range(count):
            await api.put_order(f"o-{n}")
            response = await api.call("POST", "/v1/cases", "storefront", json={**CASE, "order_id": f"o-{n}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            await asyncio.sleep(0.002)  # ids are time-ordered to the millisecond
        return ids

    async def walk(self, api: Api, who: str, limit: int, **filters: str) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params = {"limit": str(limit), **filters, **({"cursor": cursor} if cursor else {})}
            response = await api.call("GET", "/v1/cases", who, params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append([c["id"] for c in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 50, "the cursor does not advance"

    @pytest.mark.parametrize("limit", [1, 3, 7, 8, 200])
    async def test_a_walk_sees_every_case_once_newest_first(self, any_db_api: Api, limit: int) -> None:
        created = await self.make_cases(any_db_api, 7)
        pages = await self.walk(any_db_api, "support", limit)
        assert [case for page in pages for case in page] == created[::-1]
        assert all(0 < len(page) <= limit for page in pages)
        assert len(pages) == -(-7 // limit)

    async def test_filters_and_shops_hold_across_pages(self, any_db_api: Api) -> None:
        api = any_db_api
        created = await self.make_cases(api, 5)
        await api.put_order("o-b", who="storefront_b", shop_id="shop-b")
        assert (
            await api.call("POST", "/v1/cases", "storefront_b", json={**CASE, "order_id": "o-b"})
        ).status_code == 201
        withdrawn = (await api.call("GET", f"/v1/cases/{created[2]}", "support")).json()
        assert (await api.act(withdrawn, "withdraw", "storefront")).status_code == 200
        everything = [c for page in await self.walk(api, "storefront", 2) for c in page]
        assert everything == created[::-1]
        retention = [c for page in await self.walk(api, "support", 2, status="retention") for c in page]
        assert retention == [c for c in created[::-1] if c != created[2]]
        since = [
            c
            for page in await self.walk(
                api, "admin", 2, created_after=datetime.fromisoformat("2026-11-05T10:00:00+08:00").isoformat()
            )
            for c in page
        ]
        assert len(since) == 6

    async def test_an_unreadable_cursor_is_400(self, api: Api) -> None:
        response = await api.call("GET", "/v1/cases", "support", params={"cursor": "%%%not-base64"})
        assert_problem(response, 400, "invalid_cursor")
