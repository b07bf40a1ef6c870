"""What payout-worker does with each consumed event, and the results it publishes.

aftersales.cashback.approved.v1 → one ledger entry per cashback task (R-CASHBACK-ONCE), due by the
cut-off of its working day (R-CASHBACK). aftersales.cashback.cancelled.v1 → a payout not yet submitted
is cancelled. Results leave on payouts.results.v1 through the outbox, keyed by cashback task id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import Any

from aftersales_shared import topics
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import Clock, as_utc
from aftersales_shared.consumer import BatchHandler, Handler
from aftersales_shared.db import log_on_commit
from aftersales_shared.events import CashbackApproved, CashbackCancelled, CloudEvent, PayoutResult
from aftersales_shared.outbox import add_events
from sqlmodel.ext.asyncio.session import AsyncSession

from . import repository as repo
from .models import Payout, PayoutStatus
from .providers.base import MIN_AMOUNT
from .schedule import due_at

log = logging.getLogger(__name__)
SOURCE = "/payout-worker"
APPROVED = "aftersales.cashback.approved.v1"
CANCELLED = "aftersales.cashback.cancelled.v1"
NOT_SUBMITTED = (PayoutStatus.pending, PayoutStatus.batched)


def payout_row(
    data: CashbackApproved, *, payout_id: str, calendar: BusinessCalendar, cutoff: time, now: datetime
) -> dict[str, Any]:
    """The ledger entry of an approval, as column values."""
    failed = data.amount < MIN_AMOUNT  # the provider refuses it anyway: say so at once
    return {
        "id": payout_id,
        "out_biz_no": payout_id,  # the provider key: fixed here, before any call
        "cashback_task_id": data.cashback_task_id,
        "order_id": data.order_id,
        "shop_id": data.shop_id,
        "case_id": data.case_id,
        "reason": data.reason,
        "amount": data.amount,
        "payee_account": data.payee.alipay_account,
        "payee_name": data.payee.name,
        "status": PayoutStatus.failed if failed else PayoutStatus.pending,
        "batch_id": None,
        "approved_at": as_utc(data.approved_at),
        "due_at": due_at(data.approved_at, calendar, cutoff),
        "attempts": 0,
        "check_after": None,
        "provider_order_id": None,
        "provider_fund_order_id": None,
        "failure_code": "AMOUNT_BELOW_MINIMUM" if failed else None,
        "failure_message": f"transfers start at {MIN_AMOUNT} yuan" if failed else None,
        "submitted_at": None,
        "paid_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def open_payouts(
    session: AsyncSession,
    approvals: Sequence[CashbackApproved],
    *,
    new_id: Callable[[], str],
    calendar: BusinessCalendar,
    cutoff: time,
    clock: Clock,
) -> None:
    """One ledger entry per cashback task, however often its approval arrives (R-CASHBACK-ONCE)."""
    by_task = {a.cashback_task_id: a for a in approvals}
    known = await repo.tasks_with_payouts(session, list(by_task))
    now = clock.now()
    rows = [
        payout_row(a, payout_id=new_id(), calendar=calendar, cutoff=cutoff, now=now)
        for task, a in by_task.items()
        if task not in known
    ]
    if not rows:
        return
    await repo.insert_rows(session, Payout, rows)
    await queue_results(session, [result_of(r) for r in rows if r["status"] == PayoutStatus.failed], clock)


def result_of(row: Mapping[str, Any]) -> PayoutResult:
    return PayoutResult(
        payout_id=row["id"],
        cashback_task_id=row["cashback_task_id"],
        order_id=row["order_id"],
        amount=row["amount"],
        status=row["status"],
        out_biz_no=row["out_biz_no"],
        provider_reference=row.get("provider_order_id"),
        failure_code=row.get("failure_code"),
        paid_at=row.get("paid_at"),
    )


async def queue_results(session: AsyncSession, results: Sequence[PayoutResult], clock: Clock) -> None:
    """Queue paid/failed results on payouts.results.v1 in the transaction that recorded them (a batch
    records up to 1,000 results at once)."""
    for r in results:
        log_on_commit(
            session,
            log,
            "payout %s%s",
            r.status,
            f": {r.failure_code}" if r.failure_code else "",
            payout_id=r.payout_id,
            cashback_task_id=r.cashback_task_id,
            order_id=r.order_id,
        )
    await add_events(
        session,
        topic=topics.PAYOUT_RESULTS,
        source=SOURCE,
        events=[(r.cashback_task_id, f"payouts.payout.{r.status}.v1", r.payout_id, r) for r in results],
        at=clock.now(),
    )


def make_handlers(
    clock: Clock, calendar: BusinessCalendar, cutoff: time, new_id: Callable[[], str]
) -> tuple[dict[str, Handler], dict[str, BatchHandler]]:
    """(handlers, batch handlers): approvals arrive in bursts (a support shift approving a day's cashback),
    so a run of them opens its payouts together."""

    async def cashback_approved(session: AsyncSession, events: list[CloudEvent]) -> None:
        await open_payouts(
            session,
            [CashbackApproved.model_validate(e.data) for e in events],
            new_id=new_id,
            calendar=calendar,
            cutoff=cutoff,
            clock=clock,
        )

    async def cashback_cancelled(session: AsyncSession, event: CloudEvent) -> None:
        data = CashbackCancelled.model_validate(event.data)
        payout = await repo.payout_for_task(session, data.cashback_task_id, for_update=True)
        if payout is None:
            return
        if payout.status not in NOT_SUBMITTED:
            log.warning(
                "cashback cancelled after its payout was %s; it stands",
                payout.status,
                extra={"payout_id": payout.id, "cashback_task_id": payout.cashback_task_id},
            )
            return
        payout.status, payout.failure_message = PayoutStatus.cancelled, data.reason
        payout.updated_at = clock.now()
        session.add(payout)

    return {CANCELLED: cashback_cancelled}, {APPROVED: cashback_approved}
