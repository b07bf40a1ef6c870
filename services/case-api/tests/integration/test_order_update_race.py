"""A grant that waits for the order lock while the storefront lowers a line's paid amount: once the lock is
its, it must count against the new amount. (On PostgreSQL a statement that waited for a row lock sees the
other tables as they were when it began: the lines are read by a statement of their own, after the lock.)"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from case_api_checks import assert_problem
from case_api_testing import Api, eventually, one_line_order
from sqlalchemy import text

pytestmark = pytest.mark.postgres
PAYEE = {"alipay_account": "zhangsan@example.com", "name": "张三"}
# grant -> (path, body, the rule that refuses 60.00 of a line paid 40.00)
GRANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "case": (
        "/v1/cases",
        {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "refund_only",
            "reason": "other",
            "amount": "60.00",
            "description": "差价",
        },
        "R-REFUND-VERIFY",
    ),
    "cashback": (
        "/v1/cashback-tasks",
        {"order_id": "o-1", "line_id": "L1", "reason": "other", "amount": "60.00", "payee": PAYEE},
        "R-COMP-CAP",
    ),
}


async def waiting_for_a_lock(api: Api) -> bool:
    async with api.app.state.sessions() as session:
        waiting = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
        return bool(waiting.scalar_one())


@pytest.mark.parametrize("grant", sorted(GRANTS))
async def test_a_grant_waiting_for_the_lock_counts_against_the_lowered_paid_amount(
    pg_api: Api, grant: str
) -> None:
    api = pg_api
    await api.put_order(**one_line_order("100.00"))
    path, body, rule = GRANTS[grant]
    async with api.app.state.sessions() as holder:
        # What an order update does under the order's lock: the line's paid amount goes down to 40.00.
        await holder.execute(text("SELECT 1 FROM orders WHERE order_id = 'o-1' FOR UPDATE"))
        await holder.execute(
            text("UPDATE order_lines SET paid_amount = 40.00 WHERE order_id = 'o-1' AND line_id = 'L1'")
        )
        request: asyncio.Task[httpx.Response] = asyncio.create_task(
            api.call("POST", path, "support", json=body)
        )
        await eventually(lambda: waiting_for_a_lock(api), seconds=4)  # the grant waits for the order lock
        await holder.commit()
    response = await request
    assert assert_problem(response, 422, "policy_refused")["rule"] == rule, response.text
