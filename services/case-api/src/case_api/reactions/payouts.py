"""Reactions to payout-worker's results (payouts.results.v1), keyed by cashback task id.

Paid: the task records the payout (R-CASHBACK-ONCE: only once) and its ledger entries are granted, the
customer is told (a buyer message), and a price-protection or cashback case still `approved` is
closed; a task cancelled before the result came is paid all the same and a clawback is recorded. Failed:
the task records the provider's code; a standalone task's reservation is released (R-COMP-CAP), a case
paid as cashback keeps its reservation and goes back to `open` for support.

Only a result payout-worker signed is applied (aftersales_shared.signing): whoever could write to the
topic could otherwise fail a payout that was made, and its money, released, could be paid a second time.
One that does not verify is refused (`Refused`) and parked on the DLQ at once, without retries.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from aftersales_shared import contracts
from aftersales_shared.auth import Role, system_actor
from aftersales_shared.clock import as_utc
from aftersales_shared.consumer import Handler, Refused
from aftersales_shared.events import CloudEvent, PayoutResult
from aftersales_shared.problems import Problem
from aftersales_shared.signing import ResultVerifier
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers, ledger, messages
from ..domain.workflow import Action, CaseStatus
from ..models import Case, CashbackTask
from ..schemas import NotesBody
from . import system_context

log = logging.getLogger(__name__)
PAYOUT_WORKER = system_actor("payout-worker", Role.support)  # settles a case paid as cashback
SETTLED_BY_CASHBACK = ("price_protection", "cashback")


async def _locked(
    session: AsyncSession, result: PayoutResult, at: datetime
) -> tuple[handlers.Context, CashbackTask]:
    """The system context of a result and its task, read under the order's lock, then its own."""
    ctx = system_context(session, at, PAYOUT_WORKER)
    try:
        return ctx, await handlers.locked_task(ctx, result.cashback_task_id)
    except Problem:  # parked on the DLQ after the retries: a result for a task we never had
        raise LookupError(
            f"no cashback task {result.cashback_task_id} for payout {result.payout_id}"
        ) from None


def _authenticated(event: CloudEvent, verifier: ResultVerifier) -> PayoutResult:
    """The result the event carries, once its signature verifies with a payout-worker key case-api trusts
    and the event's type is the one its signed status names: a genuine paid result sent again as
    `payouts.payout.failed.v1` would otherwise verify, and release the money it paid."""
    result = PayoutResult.model_validate(event.data)
    problem = verifier.problem(result)
    if problem is None and event.type != contracts.PAYOUT_EVENTS[result.status].type:
        problem = f"its type {event.type} is not that of its signed status {result.status}"
    if problem is not None:
        raise Refused(
            {
                event.id: f"payout result refused, not authenticated: {problem} "
                f"(payout {result.payout_id:.40}, cashback task {result.cashback_task_id:.40})"
            }
        )
    return result


def _record(task: CashbackTask, result: PayoutResult, status: str, at: datetime) -> None:
    task.status, task.payout_id, task.out_biz_no = status, result.payout_id, result.out_biz_no
    task.failure_code = result.failure_code
    task.version += 1
    task.updated_at = at


async def payout_paid(session: AsyncSession, event: CloudEvent, verifier: ResultVerifier) -> None:
    result = _authenticated(event, verifier)
    ctx, task = await _locked(session, result, event.time)
    if task.status == "paid":
        return  # R-CASHBACK-ONCE: the same result again changes nothing
    cancelled = task.status == "cancelled"
    paid_at = as_utc(result.paid_at or event.time)
    _record(task, result, "paid", event.time)
    task.paid_at = paid_at
    session.add(task)
    await ledger.grant_task(session, event.time, task.id)  # the money left, whatever was said since
    if cancelled:
        handlers.request_clawback(ctx, task)  # cancelled after the transfer: recorded, never dropped
    _notify_paid(ctx, task, paid_at)
    if task.case_id is not None:
        await _settle_case(ctx, task)
    await session.flush()


def _notify_paid(ctx: handlers.Context, task: CashbackTask, paid_at: datetime) -> None:
    """R-CASHBACK: the buyer is told when the cashback is paid."""
    messages.queue(
        ctx,
        "cashback_paid",
        {"amount": task.amount, "paid_at": paid_at, "out_biz_no": task.out_biz_no},
        order_id=task.order_id,
        shop_id=task.shop_id,
        case_id=task.case_id,
        cashback_task_id=task.id,
        subject=task.id,
    )


async def _settle_case(ctx: handlers.Context, task: CashbackTask) -> None:
    """A price-protection or cashback case is settled once its cashback is paid."""
    case = await ctx.session.get(Case, task.case_id)
    if case is None or case.remedy not in SETTLED_BY_CASHBACK or case.status != CaseStatus.approved:
        return
    await handlers.act(ctx, case.id, Action.close, NotesBody(notes=f"cashback {task.id} paid"), None)


async def payout_failed(session: AsyncSession, event: CloudEvent, verifier: ResultVerifier) -> None:
    """The money never left. A standalone task's reservation is released (R-COMP-CAP); a case paid as
    cashback keeps promising it and goes back to support's queue, to be approved again or rejected."""
    result = _authenticated(event, verifier)
    ctx, task = await _locked(session, result, event.time)
    if task.status in ("paid", "failed"):
        return
    cancelled = task.status == "cancelled"
    _record(task, result, task.status if cancelled else "failed", event.time)
    session.add(task)
    log.warning(
        "cashback payout failed: %s",
        result.failure_code,
        extra={"cashback_task_id": task.id, "order_id": task.order_id, "payout_id": result.payout_id},
    )
    if cancelled:
        return  # already released when it was cancelled
    case = await session.get(Case, task.case_id) if task.case_id else None
    if case is not None and case.status == CaseStatus.approved and case.remedy in SETTLED_BY_CASHBACK:
        await ledger.return_to_case(session, event.time, task.id)
        case.status = CaseStatus.open
        handlers.touch(
            ctx,
            case,
            "payout_failed",
            CaseStatus.approved,
            {"cashback_task_id": task.id, "failure_code": result.failure_code},
        )
    await ledger.release(session, event.time, cashback_task_id=task.id)
    await session.flush()


def reactions(verifier: ResultVerifier) -> dict[str, Handler]:
    return {
        contracts.PAYOUT_PAID.type: partial(payout_paid, verifier=verifier),
        contracts.PAYOUT_FAILED.type: partial(payout_failed, verifier=verifier),
    }
