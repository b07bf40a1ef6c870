"""Approvals payout-worker cannot pay as sent (a payee field wider than the ledger's columns, an unreadable
amount, a missing payee) become failed payouts (INVALID_APPROVAL) whose result releases the money in case-api,
rather than events parked on the DLQ with their task approved forever. Only an event that names no
cashback task and order, so that nobody could be answered, goes to the DLQ. On SQLite and PostgreSQL (whose
VARCHAR(100) refuses what SQLite would store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared import topics
from aftersales_shared.events import CloudEvent
from payout_testing import Worker, any_db_worker, approved, approved_as_sent

LONG_NAME = "张" * 150
LONG_ACCOUNT = "a" * 120 + "@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        w.runner._backoff = 0  # no waiting between the per-event retries
        yield w


async def parked(w: Worker) -> list[str]:
    """The ids of the events parked on the cashback DLQ."""
    dlq = await w.bus.consumer("inspect", [topics.dlq(topics.CASHBACK)])
    return [CloudEvent.from_bytes(r.value).id for r in await dlq.fetch(timeout_ms=100)]


class TestInvalidApprovals:
    @pytest.mark.parametrize(
        "payee",
        [
            {"alipay_account": "zhangsan@example.com", "name": LONG_NAME},
            {"alipay_account": LONG_ACCOUNT, "name": "张三"},
        ],
    )
    async def test_an_oversized_payee_is_a_failed_result_not_a_dlq_record(
        self, any_db: Worker, payee: dict[str, str]
    ) -> None:
        bad = approved_as_sent("cb-long", payee=payee, amount="12.00")
        await any_db.deliver(approved("cb-1"), bad, approved("cb-2"))
        assert await any_db.statuses() == {"cb-1": "pending", "cb-long": "failed", "cb-2": "pending"}
        payout = await any_db.payout("cb-long")
        assert payout.failure_code == "INVALID_APPROVAL" and "at most 100" in (payout.failure_message or "")
        assert (
            payout.payee_name == payee["name"][:100] and payout.payee_account == payee["alipay_account"][:100]
        )
        (result,) = await any_db.results()
        assert result.type == "payouts.payout.failed.v1" and result.data.pop("signature")
        assert result.data.pop("signature_key_id") and result.data == {
            "payout_id": payout.id,
            "cashback_task_id": "cb-long",
            "order_id": "o-cb-long",
            "amount": "12.00",
            "status": "failed",
            "out_biz_no": payout.id,
            "provider_reference": None,
            "failure_code": "INVALID_APPROVAL",
            "paid_at": None,
        }
        assert await parked(any_db) == [] and any_db.runner.dead_lettered == 0

    async def test_it_is_never_sent(self, any_db: Worker) -> None:
        await any_db.deliver(
            approved_as_sent("cb-long", payee={"alipay_account": LONG_ACCOUNT, "name": "张三"})
        )
        await any_db.call("POST", "/v1/batches/flush", "ops")
        await any_db.tick()
        assert any_db.provider.calls == []

    @pytest.mark.parametrize(
        ("changes", "amount"),
        [
            ({"amount": "twelve"}, "0.00"),
            ({"amount": 12.5}, "0.00"),  # a float: never money
            ({"amount": "99999999999999.00"}, "0.00"),  # wider than NUMERIC(12, 2)
            ({"payee": None}, "12.00"),
            ({"payee": "zhangsan@example.com"}, "12.00"),
            ({"approved_at": "yesterday", "reason": None}, "12.00"),
            ({"shop_id": "s" * 80}, "12.00"),
        ],
    )
    async def test_read_as_far_as_it_goes(
        self, any_db: Worker, changes: dict[str, object], amount: str
    ) -> None:
        await any_db.deliver(approved_as_sent("cb-bad", **changes))
        payout = await any_db.payout("cb-bad")
        assert (payout.status, payout.failure_code, str(payout.amount)) == (
            "failed",
            "INVALID_APPROVAL",
            amount,
        )
        (result,) = await any_db.results()
        assert result.data["failure_code"] == "INVALID_APPROVAL" and result.data["amount"] == amount

    async def test_redelivered_it_is_still_one_payout_and_one_result(self, any_db: Worker) -> None:
        bad = approved_as_sent("cb-bad", amount="twelve")
        await any_db.deliver(bad, bad)
        await any_db.deliver(approved_as_sent("cb-bad", amount="still nonsense"))  # a new event, same task
        assert len(await any_db.payouts()) == 1 and len(await any_db.results()) == 1

    @pytest.mark.parametrize(
        "changes",
        [
            {"cashback_task_id": None},
            {"cashback_task_id": 42},
            {"cashback_task_id": "cb-" + "x" * 60},  # wider than any task id: not one case-api knows
            {"order_id": None},
        ],
    )
    async def test_without_a_task_and_an_order_it_goes_to_the_dlq(
        self, any_db: Worker, changes: dict[str, object]
    ) -> None:
        bad = approved_as_sent("cb-bad", amount="twelve", **changes)
        await any_db.deliver(approved("cb-1"), bad)
        assert await any_db.statuses() == {"cb-1": "pending"}
        assert await parked(any_db) == [bad.id] and await any_db.results() == []
