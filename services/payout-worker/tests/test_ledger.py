"""The payout ledger: one payout per cashback task however often the approval arrives (R-CASHBACK-ONCE),
cancellations before submission, results on payouts.results.v1, and the schedule's pure rules."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from aftersales_shared import topics
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.events import CloudEvent, PayoutResult
from aftersales_shared.signing import ResultVerifier, key_id
from payout_testing import RESULT_KEY, Worker, approved, at, cancelled
from payout_worker.models import Payout
from payout_worker.schedule import backoff, due_at, open_window
from sqlalchemy.exc import IntegrityError


class TestOnePayoutPerTask:
    async def test_the_same_event_delivered_twice_is_one_payout(self, worker: Worker) -> None:
        event = approved("cb-1")
        await worker.deliver(event, event)
        await worker.deliver(event)
        payouts = await worker.payouts()
        assert [p.cashback_task_id for p in payouts] == ["cb-1"]
        assert payouts[0].out_biz_no == payouts[0].id  # the provider key is the payout id, fixed at once

    async def test_a_second_approval_of_the_same_task_is_one_payout(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"))
        (first,) = await worker.payouts()
        await worker.deliver(approved("cb-1", amount="99.00"))  # a new event id for the same task
        assert [(p.id, p.amount) for p in await worker.payouts()] == [(first.id, first.amount)]

    async def test_the_database_refuses_a_second_payout_for_a_task(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"))
        (first,) = await worker.payouts()
        async with worker.app.state.sessions() as session:
            session.add(Payout(**{**first.model_dump(), "id": "po_other", "out_biz_no": "po_other"}))
            with pytest.raises(IntegrityError):
                await session.commit()

    async def test_a_payout_is_sent_once_however_often_the_worker_ticks(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1", when=at("2026-11-05 09:00")))
        for minutes in range(0, 120, 10):
            await worker.tick(at("2026-11-05 17:30") + timedelta(minutes=minutes))
        assert sum(len(c) for c in worker.provider.calls) == 1

    async def test_one_bad_event_in_a_chunk_is_parked_and_the_rest_are_applied(self, worker: Worker) -> None:
        worker.runner._backoff = 0  # no waiting between the per-event retries
        bad = CloudEvent.model_validate(
            {**approved("cb-bad").model_dump(), "data": {"cashback_task_id": "x"}}
        )
        await worker.deliver(approved("cb-1"), bad, approved("cb-2"))
        assert set(await worker.statuses()) == {"cb-1", "cb-2"}
        dlq = await worker.bus.consumer("inspect", [topics.dlq(topics.CASHBACK)])
        parked = await dlq.fetch(timeout_ms=100)
        assert [CloudEvent.from_bytes(r.value).id for r in parked] == [bad.id]


class TestCancellation:
    async def test_a_cancelled_task_is_never_sent(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"), approved("cb-2"))
        await worker.deliver(cancelled("cb-1"))
        await worker.tick(at("2026-11-05 17:30"))
        assert await worker.statuses() == {"cb-1": "cancelled", "cb-2": "paid"}
        assert [t.remark for c in worker.provider.calls for t in c] == ["cb-2"]

    async def test_a_batched_payout_can_still_be_cancelled(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"))
        await worker.call("POST", "/v1/batches/flush", "ops")
        await worker.deliver(cancelled("cb-1"))
        await worker.tick()
        assert await worker.statuses() == {"cb-1": "cancelled"}
        assert worker.provider.calls == []

    async def test_a_paid_payout_stands(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"))
        await worker.tick(at("2026-11-05 17:30"))
        await worker.deliver(cancelled("cb-1"))
        assert await worker.statuses() == {"cb-1": "paid"}


class TestResults:
    async def test_paid_and_failed_results_leave_keyed_by_cashback_task(self, worker: Worker) -> None:
        worker.provider.refuse["nobody@example.com"] = "PAYEE_NOT_EXIST"
        await worker.deliver(
            approved("cb-ok", case_id="case-1"), approved("cb-bad", account="nobody@example.com")
        )
        await worker.tick(at("2026-11-05 17:30"))
        results = {e.data["cashback_task_id"]: e for e in await worker.results()}
        paid, failed = results["cb-ok"], results["cb-bad"]
        assert paid.type == "payouts.payout.paid.v1" and failed.type == "payouts.payout.failed.v1"
        payout = {p.cashback_task_id: p for p in await worker.payouts()}
        # Signed with the worker's result key: case-api applies no other.
        verifier = ResultVerifier([RESULT_KEY.public_key()])
        assert all(verifier.problem(PayoutResult.model_validate(e.data)) is None for e in (paid, failed))
        assert paid.data.pop("signature_key_id") == key_id(RESULT_KEY.public_key()) and paid.data.pop(
            "signature"
        )
        assert paid.data == {
            "payout_id": payout["cb-ok"].id,
            "cashback_task_id": "cb-ok",
            "order_id": "o-cb-ok",
            "amount": "12.00",
            "status": "paid",
            "out_biz_no": payout["cb-ok"].id,
            "provider_reference": f"fake-{payout['cb-ok'].id}",
            "failure_code": None,
            "paid_at": "2026-11-05T09:30:00Z",
        }
        assert failed.data["failure_code"] == "PAYEE_NOT_EXIST" and failed.data["paid_at"] is None
        from aftersales_shared.outbox import OutboxMessage
        from sqlmodel import select

        async with worker.app.state.sessions() as session:
            keys = {m.key for m in (await session.exec(select(OutboxMessage))).all()}
        assert keys == {"cb-ok", "cb-bad"}

    async def test_an_amount_below_the_minimum_fails_at_once(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-tiny", amount="0.09"))
        (payout,) = await worker.payouts()
        assert (payout.status, payout.failure_code) == ("failed", "AMOUNT_BELOW_MINIMUM")
        (result,) = await worker.results()
        assert result.data["status"] == "failed"
        await worker.tick(at("2026-11-05 17:30"))
        assert worker.provider.calls == []

    async def test_results_reach_the_bus_through_the_relay(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"))
        await worker.tick(at("2026-11-05 17:30"))
        await worker.app.state.relay.drain_once()
        consumer = await worker.bus.consumer("case-api-test", [topics.PAYOUT_RESULTS])
        (record,) = await consumer.fetch(timeout_ms=100)
        assert record.key == "cb-1" and CloudEvent.from_bytes(record.value).data["status"] == "paid"


class TestSchedule:
    calendar = BusinessCalendar()
    cutoff = time(17, 30)

    @pytest.mark.parametrize(
        ("approved_at", "due"),
        [
            ("2026-11-05 10:00", "2026-11-05 17:30"),  # a working day, before the cut-off
            ("2026-11-05 17:30", "2026-11-06 17:30"),  # at the cut-off: the next working day
            ("2026-11-06 18:00", "2026-11-09 17:30"),  # Friday evening: Monday
            ("2026-09-30 18:00", "2026-10-08 17:30"),  # before the National Day holiday (10-01..07)
            ("2026-10-05 12:00", "2026-10-08 17:30"),  # during it
            ("2026-10-09 18:00", "2026-10-10 17:30"),  # Friday evening: the make-up working Saturday
            ("2026-10-10 18:00", "2026-10-12 17:30"),  # after the Saturday's cut-off: Monday
        ],
    )
    def test_due_at(self, approved_at: str, due: str) -> None:
        assert due_at(at(approved_at), self.calendar, self.cutoff) == at(due)

    def test_the_window_is_open_on_working_days_before_the_cutoff(self) -> None:
        assert open_window(at("2026-10-10 09:00"), self.calendar, self.cutoff) == at("2026-10-10 17:30")
        assert open_window(at("2026-10-10 17:30"), self.calendar, self.cutoff) is None
        assert open_window(at("2026-10-03 09:00"), self.calendar, self.cutoff) is None
        assert open_window(at("2026-10-11 09:00"), self.calendar, self.cutoff) is None

    def test_backoff_doubles_from_a_floor_to_a_cap(self) -> None:
        assert [backoff(timedelta(seconds=s), 2, 300).total_seconds() for s in (0, 2, 4, 100, 1000)] == [
            2,
            2,
            4,
            100,
            300,
        ]

    def test_batches_hold_at_most_1000(self) -> None:
        from payout_worker.config import Settings
        from pydantic import ValidationError

        assert Settings().batch_size == 1000
        with pytest.raises(ValidationError):
            Settings(batch_size=1001)
