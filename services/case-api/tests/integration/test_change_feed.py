"""The change feed (`updated_after`) on cases and cashback tasks: every change once in (updated_at, id)
order, stable while writes go on (a transaction that took its updated_at early and commits late is not
skipped), limited to the key's shops, and a malformed cursor is a 400, never an empty page."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.pagination import encode_cursor, encode_position
from aftersales_testing import fresh_postgres_database
from case_api.config import Settings
from case_api.models import Case
from case_api_checks import assert_problem
from case_api_testing import NOW, Api, running_api
from sqlalchemy import update

SETTLE = timedelta(seconds=5)  # the default CASE_API_CHANGE_FEED_SETTLE_SECONDS
SINCE = (NOW - timedelta(days=1)).isoformat()
CASHBACK = {
    "order_id": "o-1",
    "line_id": "L2",
    "reason": "shipping_fee",
    "amount": "4.00",
    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
}


async def feed(
    api: Api, path: str = "/v1/cases", who: str = "support", cursor: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    params: dict[str, Any] = {"updated_after": SINCE, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    response = await api.call("GET", path, who, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"], body["next_cursor"]


async def open_cases(api: Api, n: int) -> list[dict[str, Any]]:
    """`n` cases a second apart, each on an order of its own."""
    opened = []
    for _ in range(n):
        api.clock.advance(seconds=1)
        order_id = f"o-{uuid.uuid4().hex[:8]}"
        await api.put_order(order_id)
        response = await api.open_case(order_id=order_id)
        assert response.status_code == 201, response.text
        opened.append(response.json())
    return opened


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def positions(items: list[dict[str, Any]]) -> list[tuple[datetime, str]]:
    return [(datetime.fromisoformat(i["updated_at"]), i["id"]) for i in items]


class TestOrder:
    async def test_oldest_change_first_and_a_changed_case_moves_to_the_end(self, any_db_api: Api) -> None:
        api = any_db_api
        first, second, third = await open_cases(api, 3)
        api.clock.advance(seconds=1)
        assert (await api.act(first, "withdraw", "storefront")).status_code == 200
        api.clock.advance(seconds=10)
        items, cursor = await feed(api)
        assert [i["id"] for i in items] == [second["id"], third["id"], first["id"]]
        assert positions(items) == sorted(positions(items))
        assert cursor is not None
        again, same = await feed(api, cursor=cursor)  # nothing new: the same cursor to poll with
        assert again == [] and same == cursor

    async def test_a_change_is_shown_once_it_is_settled(self, api: Api) -> None:
        (case,) = await open_cases(api, 1)
        assert (await feed(api))[0] == []
        api.clock.advance(seconds=SETTLE.total_seconds())
        assert [i["id"] for i in (await feed(api))[0]] == [case["id"]]

    async def test_paging_while_writes_go_on_misses_nothing(self, any_db_api: Api) -> None:
        api = any_db_api
        opened = await open_cases(api, 4)
        api.clock.advance(seconds=10)
        seen: list[dict[str, Any]] = []
        items, cursor = await feed(api, limit=2)
        seen += items
        more = await open_cases(api, 2)  # written between two pages
        assert (await api.act(opened[0], "withdraw", "storefront")).status_code == 200
        api.clock.advance(seconds=10)
        while True:
            items, following = await feed(api, cursor=cursor, limit=2)
            seen += items
            if not items:
                break
            cursor = following
        ids = [i["id"] for i in seen]
        assert set(ids) == {c["id"] for c in opened + more}
        assert ids.count(opened[0]["id"]) == 2  # once per change
        assert positions(seen) == sorted(positions(seen))

    async def test_cashback_tasks_have_the_same_feed(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        created = [
            (await api.call("POST", "/v1/cashback-tasks", "support", json=CASHBACK)).json() for _ in range(2)
        ]
        api.clock.advance(seconds=1)
        approve = await api.call("POST", f"/v1/cashback-tasks/{created[0]['id']}/approve", "support")
        assert approve.status_code == 200, approve.text
        api.clock.advance(seconds=10)
        items, _ = await feed(api, "/v1/cashback-tasks")
        assert [(i["id"], i["status"]) for i in items] == [
            (created[1]["id"], "pending_verification"),
            (created[0]["id"], "approved"),
        ]

    async def test_another_shops_changes_are_not_in_the_feed(self, api: Api) -> None:
        await open_cases(api, 2)
        api.clock.advance(seconds=10)
        assert (await feed(api, who="storefront_b"))[0] == []
        assert len((await feed(api, who="storefront"))[0]) == 2


class TestCursors:
    async def test_a_malformed_cursor_is_400_on_both_feeds_and_lists(self, any_db_api: Api) -> None:
        api = any_db_api
        (case,) = await open_cases(api, 1)
        bad = [
            "%%%",
            "Y2FzZV96",  # base64 of an id, but no cursor of ours
            encode_cursor(case["id"]),  # a list's cursor given to the feed
            b64("u1:yesterday|case_1"),  # a feed's mark, no time
            b64("u1:2026-11-05T10:00:00|case_1"),  # a time without its offset
            b64("u1:1999-12-31T00:00:00+00:00|case_1"),  # out of range
            encode_position(NOW, "case_\x001"),
        ]
        for path in ("/v1/cases", "/v1/cashback-tasks"):
            for cursor in bad:
                response = await api.call(
                    "GET", path, "support", params={"updated_after": SINCE, "cursor": cursor}
                )
                assert_problem(response, 400, "invalid_cursor")
            # and a feed's cursor given to a plain list
            listed = await api.call(
                "GET", path, "support", params={"cursor": encode_position(NOW, case["id"])}
            )
            assert_problem(listed, 400, "invalid_cursor")

    async def test_updated_after_needs_an_offset(self, api: Api) -> None:
        response = await api.call(
            "GET", "/v1/cases", "support", params={"updated_after": "2026-11-05T10:00:00"}
        )
        assert_problem(response, 422, "validation_failed")


@pytest.fixture
async def postgres_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    async with fresh_postgres_database("case_api_feed") as url:
        settings = Settings(
            data_dir=tmp_path,
            database_url=url,
            database_name=url.rsplit("/", 1)[1],
            change_feed_settle_seconds=request.param,
        )
        async for running in running_api(settings, tmp_path):
            yield running


@pytest.mark.postgres
class TestCommitOrder:
    """A change whose transaction took its updated_at before another's but commits after it."""

    async def late_commit(self, api: Api) -> tuple[list[str], str]:
        early, later = await open_cases(api, 2)
        api.clock.advance(seconds=10)
        _, cursor = await feed(api)
        assert cursor is not None
        slow_at = api.clock.now()
        async with api.app.state.sessions() as slow:  # takes its updated_at now, commits after the next one
            await slow.exec(update(Case).where(Case.id == early["id"]).values(updated_at=slow_at))
            api.clock.advance(seconds=1)
            assert (await api.act(later, "withdraw", "storefront")).status_code == 200
            api.clock.advance(seconds=1)
            seen, cursor = await feed(api, cursor=cursor)
            await slow.commit()
        api.clock.advance(seconds=10)
        rest, _ = await feed(api, cursor=cursor)
        return [i["id"] for i in seen + rest], early["id"]

    @pytest.mark.parametrize("postgres_api", [5.0], indirect=True)
    async def test_the_settle_time_keeps_it_in_the_feed(self, postgres_api: Api) -> None:
        ids, early = await self.late_commit(postgres_api)
        assert early in ids

    @pytest.mark.parametrize("postgres_api", [0.0], indirect=True)
    async def test_without_it_a_client_would_skip_it(self, postgres_api: Api) -> None:
        """The control: what the settle time is for."""
        ids, early = await self.late_commit(postgres_api)
        assert early not in ids
