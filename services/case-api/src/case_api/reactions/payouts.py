"""Reactions to payout-worker's results (payouts.results.v1), keyed by cashback task id.

Paid: the task records the payout (R-CASHBACK-ONCE: only once), the customer is told (a notification
event), and a price-protection or cashback case still `approved` is closed. Failed: the task records the
provider's code and its compensation is released, so the allowance returns (R-COMP-CAP).
"""

from __future__ import annotations

import logging
from datetime import datetime

from aftersales_shared import topics
from aftersales_shared.auth import Principal, Role
from aftersales_shared.clock import SHANGHAI, as_utc
from aftersales_shared.consumer import Handler
from aftersales_shared.events import CloudEvent, CustomerNotification, PayoutResult
from aftersales_shared.ids import new_id
from aftersales_shared.money import fmt
from aftersales_shared.outbox import add_event
from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers
from ..domain.workflow import Action, CaseStatus
from ..models import Case, CashbackTask, Compensation
from ..schemas import ActionIn
from . import system_context

log = logging.getLogger(__name__)
PAYOUT_WORKER = Principal(
    key_id="service:payout-worker", name="payout-worker", roles=frozenset({Role.support}), shops=None
)
SETTLED_BY_CASHBACK = ("price_protection", "cashback")


async def _task(session: AsyncSession, result: PayoutResult) -> CashbackTask:
    task = (
        await session.exec(
            select(CashbackTask).where(CashbackTask.id == result.cashback_task_id).with_for_update()
        )
    ).first()
    if task is None:  # parked on the DLQ after the retries: a result for a task we never had
        raise LookupError(f"no cashback task {result.cashback_task_id} for payout {result.payout_id}")
    return task


def _record(task: CashbackTask, result: PayoutResult, status: str, at: datetime) -> None:
    task.status, task.payout_id, task.out_biz_no = status, result.payout_id, result.out_biz_no
    task.failure_code = result.failure_code
    task.version += 1
    task.updated_at = at


async def payout_paid(session: AsyncSession, event: CloudEvent) -> None:
    result = PayoutResult.model_validate(event.data)
    task = await _task(session, result)
    if task.status == "paid":
        return  # R-CASHBACK-ONCE: the same result again changes nothing
    paid_at = as_utc(result.paid_at or event.time)
    _record(task, result, "paid", event.time)
    task.paid_at = paid_at
    session.add(task)
    _notify_paid(session, task, paid_at, event.time)
    if task.case_id is not None:
        await _settle_case(session, task, event.time)
    await session.flush()


def _notify_paid(session: AsyncSession, task: CashbackTask, paid_at: datetime, at: datetime) -> None:
    when = paid_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    amount = fmt(task.amount)
    add_event(
        session,
        topic=topics.CASES,
        key=task.order_id,
        source=handlers.SOURCE,
        type="aftersales.notification.requested.v1",
        subject=task.id,
        at=at,
        data=CustomerNotification(
            notification_id=new_id("ntf"),
            template="cashback_paid",
            order_id=task.order_id,
            shop_id=task.shop_id,
            case_id=task.case_id,
            cashback_task_id=task.id,
            message_zh=f"亲，您的返现 {amount} 元已于 {when} 转入您的支付宝账户，请注意查收。感谢您的支持！",
            message_en=f"Your cashback of {amount} CNY was sent to your Alipay account at {when} "
            "(Beijing time). Thank you for shopping with us!",
            data={"amount": amount, "paid_at": paid_at.isoformat(), "out_biz_no": task.out_biz_no},
        ),
    )


async def _settle_case(session: AsyncSession, task: CashbackTask, at: datetime) -> None:
    """A price-protection or cashback case is settled once its cashback is paid."""
    case = await session.get(Case, task.case_id)
    if case is None or case.remedy not in SETTLED_BY_CASHBACK or case.status != CaseStatus.approved:
        return
    ctx = system_context(session, at, PAYOUT_WORKER)
    await handlers.act(ctx, case.id, Action.close, ActionIn(notes=f"cashback {task.id} paid"), None)


async def payout_failed(session: AsyncSession, event: CloudEvent) -> None:
    result = PayoutResult.model_validate(event.data)
    task = await _task(session, result)
    if task.status in ("paid", "failed"):
        return
    _record(task, result, "failed", event.time)
    session.add(task)
    # R-COMP-CAP: the money never left, so what the task booked against the line is free again.
    await session.exec(delete(Compensation).where(col(Compensation.cashback_task_id) == task.id))
    log.warning(
        "cashback payout failed: %s",
        result.failure_code,
        extra={"cashback_task_id": task.id, "order_id": task.order_id, "payout_id": result.payout_id},
    )
    await session.flush()


HANDLERS: dict[str, Handler] = {
    "payouts.payout.paid.v1": payout_paid,
    "payouts.payout.failed.v1": payout_failed,
}
