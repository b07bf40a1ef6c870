"""Approvals case-api signed that payout-worker cannot pay as sent (a payee field wider than the ledger's
columns) become failed payouts (INVALID_APPROVAL) whose result releases the money in case-api, rather than
events parked on the DLQ with their task approved forever. An event that cannot even be read as an approval
(an unreadable amount, a missing payee) cannot be authenticated either: it is parked at once, with no payout
and no result, as a forgery would be, and so is one whose task id no result could carry. On SQLite and
PostgreSQL (whose VARCHAR(100) refuses what SQLite would store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from payout_testing import Worker, any_db_worker, approved, approved_as_sent

LONG_NAME = "张" * 150
LONG_ACCOUNT = "a" * 120 + "@example.com"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        w.runner._backoff = 0  # no waiting between the per-event retries
        yield w


class TestInvalidApprovals:
    @pytest.mark.parametrize(
        ("changes", "cut"),
        [
            ({"shop_id": "s" * 80}, {"shop_id": "s" * 64}),
            ({"order_id": "o" * 70}, {"order_id": "o" * 64}),
            ({"case_id": "c" * 50}, {"case_id": "c" * 40}),
        ],
    )
    async def test_an_oversized_id_is_a_failed_result_not_a_dlq_record(
        self, any_db: Worker, changes: dict[str, str], cut: dict[str, str]
    ) -> None:
        bad = approved_as_sent("cb-long", **changes)
        await any_db.deliver(approved("cb-1"), bad, approved("cb-2"))
        assert await any_db.statuses() == {"cb-1": "pending", "cb-long": "failed", "cb-2": "pending"}
        payout = await any_db.payout("cb-long")
        assert payout.failure_code == "INVALID_APPROVAL" and "characters, at most" in (
            payout.failure_message or ""
        )
        assert {name: getattr(payout, name) for name in cut} == cut
        (result,) = await any_db.results()
        assert result.type == "payouts.payout.failed.v1" and result.data.pop("signature")
        assert result.data.pop("signature_key_id") and result.data == {
            "payout_id": payout.id,
            "cashback_task_id": "cb-long",
            "order_id": payout.order_id,
            "amount": "12.00",
            "status": "failed",
            "out_biz_no": payout.id,
            "provider_reference": None,
            "failure_code": "INVALID_APPROVAL",
            "paid_at": None,
        }
        assert await any_db.parked() == {} and any_db.runner.dead_lettered == 0

    async def test_it_is_never_sent(self, any_db: Worker) -> None:
        await any_db.deliver(approved_as_sent("cb-long", shop_id="s" * 80))
        await any_db.call("POST", "/v1/batches/flush", "ops")
        await any_db.tick()
        assert any_db.provider.calls == []

    @pytest.mark.parametrize(
        "changes",
        [
            {"amount": "twelve"},
            {"amount": 12.5},  # a float: never money
            {"amount": "99999999999999.00"},  # wider than NUMERIC(12, 2)
            {"payee": None},
            {"payee": "zhangsan@example.com"},
            {"approved_at": "yesterday", "reason": None},
            {"payee": {"alipay_account": "zhangsan@example.com", "name": LONG_NAME}},
            {"payee": {"alipay_account": LONG_ACCOUNT, "name": "张三"}},
        ],
    )
    async def test_unreadable_it_is_parked_without_an_answer(
        self, any_db: Worker, changes: dict[str, object]
    ) -> None:
        """case-api signs only what the shared model reads: this was not signed by it, and the task it
        names (perhaps a real one, whose genuine approval is on its way) is left alone."""
        bad = approved_as_sent("cb-bad", **changes)
        await any_db.deliver(approved("cb-1"), bad, approved("cb-2"))
        assert await any_db.statuses() == {"cb-1": "pending", "cb-2": "pending"}
        assert list(await any_db.parked()) == [bad.id] and await any_db.results() == []
        assert any_db.runner.dead_lettered == 1

    async def test_redelivered_it_is_still_one_payout_and_one_result(self, any_db: Worker) -> None:
        bad = approved_as_sent("cb-bad", shop_id="s" * 80)
        await any_db.deliver(bad, bad)
        await any_db.deliver(approved_as_sent("cb-bad", shop_id="t" * 90))  # a new event, same task
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
        bad = approved_as_sent("cb-bad", **changes)
        await any_db.deliver(approved("cb-1"), bad)
        assert await any_db.statuses() == {"cb-1": "pending"}
        assert list(await any_db.parked()) == [bad.id] and await any_db.results() == []
