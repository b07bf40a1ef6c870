"""A cashback task cancelled in case-api (aftersales.cashback.cancelled.v1): a payout not yet sent is
cancelled and never reaches the provider, even when the cancel races the sender; one already submitted,
unknown or paid stands and becomes a clawback item for ops (a WARNING line, its columns on the payout and in
the cashback register), never dropped in silence. case-api has released the money: no result is sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from aftersales_shared.events import CashbackCancelled
from payout_testing import Worker, any_db_worker, approved, at, cancelled
from payout_worker import handlers
from payout_worker import repository as repo
from payout_worker.models import Payout
from sqlmodel import col, update


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        yield w


@pytest.fixture
async def on_postgres(tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker("postgres", tmp_path):
        yield w


class TestCancelBeforeSubmit:
    async def test_pending_batched_and_held_payouts_are_cancelled_without_a_result(
        self, any_db: Worker
    ) -> None:
        await any_db.deliver(approved("cb-batched"))
        await any_db.call("POST", "/v1/batches/flush", "ops")
        await any_db.deliver(approved("cb-pending"), approved("cb-held"))
        async with any_db.app.state.sessions() as session:  # as if a risk limit had held it
            await session.exec(
                update(Payout)
                .where(col(Payout.cashback_task_id) == "cb-held")
                .values(status="held_for_review", hold_reason="per_transfer")
            )
            await session.commit()
        await any_db.deliver(cancelled("cb-batched"), cancelled("cb-pending"), cancelled("cb-held"))
        await any_db.tick(at("2026-11-05 17:30"))
        assert set((await any_db.statuses()).values()) == {"cancelled"}
        assert any_db.provider.calls == [] and await any_db.results() == []
        (batch,) = (await any_db.call("GET", "/v1/batches", "admin")).json()["items"]
        assert (batch["status"], batch["counts"]) == ("completed", {"cancelled": 1})  # nothing left to send
        assert (await any_db.payout("cb-batched")).clawback_requested_at is None


class TestCancelAfterSubmit:
    async def test_a_paid_payout_stands_as_a_clawback_item(
        self, any_db: Worker, caplog: pytest.LogCaptureFixture
    ) -> None:
        await any_db.deliver(approved("cb-1"), approved("cb-2"))
        await any_db.tick(at("2026-11-05 17:30"))
        sent = len(await any_db.results())
        any_db.clock.set(at("2026-11-06 10:00"))
        with caplog.at_level(logging.WARNING, logger="payout_worker.handlers"):
            await any_db.deliver(cancelled("cb-1"))
        payout = await any_db.payout("cb-1")
        assert payout.status == "paid" and payout.paid_at is not None
        assert payout.clawback_requested_at == at("2026-11-06 10:00")
        assert payout.clawback_reason == "withdrawn by support"
        (line,) = [r for r in caplog.records if r.levelno == logging.WARNING and "clawback" in r.getMessage()]
        assert (
            getattr(line, "payout_id", None) == payout.id
            and getattr(line, "cashback_task_id", None) == "cb-1"
        )
        assert len(await any_db.results()) == sent  # case-api released already: nothing to say

        # A second cancel (another event) keeps the first request's time.
        any_db.clock.set(at("2026-11-07 10:00"))
        await any_db.deliver(cancelled("cb-1"))
        assert (await any_db.payout("cb-1")).clawback_requested_at == at("2026-11-06 10:00")

    async def test_the_register_and_the_ledger_show_clawback_items(self, any_db: Worker) -> None:
        await any_db.deliver(approved("cb-1"), approved("cb-2"))
        await any_db.tick(at("2026-11-05 17:30"))
        any_db.clock.set(at("2026-11-06 10:00"))
        await any_db.deliver(cancelled("cb-1"))
        register = (await any_db.call("GET", "/v1/registers/cashback?date=2026-11-05", "support")).json()
        rows = {r["cashback_task_id"]: r for r in register["items"]}
        assert rows["cb-1"]["clawback_requested_at"] == "2026-11-06T10:00:00+08:00"
        assert rows["cb-1"]["clawback_reason"] == "withdrawn by support"
        assert rows["cb-2"]["clawback_requested_at"] is None and rows["cb-2"]["clawback_reason"] is None
        csv = await any_db.call("GET", "/v1/registers/cashback?date=2026-11-05&format=csv", "ops")
        header = csv.content.decode("utf-8-sig").splitlines()[0]
        assert header.endswith(",追回申请时间,追回原因")
        items = (await any_db.call("GET", "/v1/payouts?clawback=true", "ops")).json()["items"]
        assert [(p["cashback_task_id"], p["status"]) for p in items] == [("cb-1", "paid")]
        others = (await any_db.call("GET", "/v1/payouts?clawback=false", "ops")).json()["items"]
        assert [p["cashback_task_id"] for p in others] == ["cb-2"]

    async def test_a_submitted_payout_stands_and_is_paid(self, any_db: Worker) -> None:
        """A crash between the call and the record leaves it submitted: it may have been executed."""
        await any_db.deliver(approved("cb-1"))
        async with any_db.app.state.sessions() as session:
            await session.exec(
                update(Payout).values(
                    status="submitted", submitted_at=any_db.clock.now(), check_after=any_db.clock.now()
                )
            )
            await session.commit()
        await any_db.deliver(cancelled("cb-1"))
        payout = await any_db.payout("cb-1")
        assert payout.status == "submitted" and payout.clawback_requested_at is not None
        await any_db.tick()  # queried: never executed, so the identical request goes again
        payout = await any_db.payout("cb-1")
        assert payout.status == "paid" and payout.clawback_requested_at is not None

    async def test_a_failed_payout_needs_no_clawback(self, any_db: Worker) -> None:
        any_db.provider.refuse["zhangsan@example.com"] = "PAYEE_NOT_EXIST"
        await any_db.deliver(approved("cb-1"))
        await any_db.tick(at("2026-11-05 17:30"))
        await any_db.deliver(cancelled("cb-1"))
        payout = await any_db.payout("cb-1")
        assert (payout.status, payout.clawback_requested_at) == ("failed", None)


@pytest.mark.postgres
class TestCancelRacingTheSender:
    """The sender claims only rows still `batched`, under the row lock (FOR UPDATE SKIP LOCKED), and the
    cancel takes the same lock: whichever comes first, a payout is either cancelled and never sent, or
    sent and a clawback item."""

    async def test_a_cancel_holding_the_row_keeps_it_from_the_sender(self, on_postgres: Worker) -> None:
        w = on_postgres
        await w.deliver(approved("cb-1"))
        await w.call("POST", "/v1/batches/flush", "ops")
        async with w.app.state.sessions() as canceller:
            data = CashbackCancelled(cashback_task_id="cb-1", order_id="o-cb-1", shop_id="shop-a", reason="r")
            await handlers.cancel_for_task(canceller, data, w.clock.now())
            assert await w.engine.send_next_batch() is False  # skipped: the cancel holds it
            await canceller.commit()
        await w.tick()
        assert w.provider.calls == [] and await w.statuses() == {"cb-1": "cancelled"}

    async def test_a_cancel_waiting_on_the_sender_finds_it_submitted(self, on_postgres: Worker) -> None:
        w = on_postgres
        await w.deliver(approved("cb-1"))
        await w.call("POST", "/v1/batches/flush", "ops")
        async with w.app.state.sessions() as sender:
            claimed = await repo.claim_batched(sender, 10)
            await w.engine._mark_submitted(sender, claimed)
            cancel = asyncio.create_task(w.deliver(cancelled("cb-1")))
            await asyncio.sleep(0.5)
            assert not cancel.done()  # waiting for the row lock
            await sender.commit()
        await cancel
        payout = await w.payout("cb-1")
        assert payout.status == "submitted" and isinstance(payout.clawback_requested_at, datetime)
