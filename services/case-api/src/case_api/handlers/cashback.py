"""Cashback tasks 返现任务单: created (reserving their money), verified by support, cancelled when their
grant is withdrawn, and a clawback asked when that comes after the transfer."""

from __future__ import annotations

import logging

from aftersales_shared import contracts
from aftersales_shared.auth import Role
from aftersales_shared.db import log_on_commit
from aftersales_shared.events import CashbackApproved, CashbackCancelled, CashbackTaskChanged, Payee
from aftersales_shared.ids import new_id
from aftersales_shared.outbox import add_event
from aftersales_shared.problems import Problem, conflict

from .. import ledger
from .. import repository as repo
from ..domain import ledger as dl
from ..domain import model as dm
from ..domain import policy
from ..domain.case import WITHDRAWN
from ..domain.workflow import CaseStatus
from ..models import CashbackTask, Order
from ..schemas import CashbackCreate
from .context import SOURCE, Context
from .orders import domain_order

log = logging.getLogger(__name__)


LIVE_TASK = ("pending_verification", "approved")  # not yet paid, and still meant to be


async def create_cashback(ctx: Context, body: CashbackCreate) -> CashbackTask:
    """A task reserves its amount as it is created, under the order's lock: against the line (R-COMP-CAP),
    or, for postage, against the order's shipping fee (R-POSTAGE); approval then needs no re-check."""
    ctx.principal.require(Role.support, Role.storefront)
    if body.postage_receipt is not None:
        ctx.principal.require(Role.support)  # support saw the receipt
    order, lines = (await ledger.lock_orders_with_lines(ctx.session, ctx.principal, body.order_id))[
        body.order_id
    ]
    domain = domain_order(order, lines)
    if body.line_id not in {li.line_id for li in domain.lines}:
        raise Problem(
            422,
            "validation_failed",
            "Unknown line",
            f"order {order.order_id} has no line {body.line_id}",
            errors=[{"field": "line_id", "message": "not a line of the order"}],
        )
    postage = body.reason == "shipping_fee"
    if body.case_id is not None:
        await _check_task_case(ctx, body, order, postage)
    history = await ledger.line_history(ctx.session, order.order_id)
    if postage:
        dl.check_postage(domain, body.amount, history, reimbursement=True, receipt=body.postage_receipt)
    else:
        policy.check_cap(domain, {body.line_id: body.amount}, history)
    task = CashbackTask(
        id=new_id("cb"),
        order_id=order.order_id,
        shop_id=order.shop_id,
        line_id=body.line_id,
        case_id=body.case_id,
        reason=body.reason,
        amount=body.amount,
        payee=body.payee.model_dump(),
        status="pending_verification",
        note=body.note,
        postage_receipt=body.postage_receipt,
        created_by=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(task)
    reserved = ledger.reservations(
        order_id=order.order_id,
        amounts={body.line_id: body.amount},
        bucket=dl.Bucket.POSTAGE if postage else dl.Bucket.GOODS,
        kind="shipping_fee" if postage else "cashback",
        now=ctx.now,
        cashback_task_id=task.id,
    )
    ctx.session.add_all(reserved)
    emit_task_change(ctx, task, contracts.CASHBACK_CREATED)
    await ctx.session.flush()
    return task


async def _check_task_case(ctx: Context, body: CashbackCreate, order: Order, postage: bool) -> None:
    """A task names a live case of the same order; a return's postage is reimbursed once (R-POSTAGE)."""
    assert body.case_id is not None
    case = await repo.get_case(ctx.session, ctx.principal, body.case_id)
    if case.order_id != order.order_id:
        raise Problem(
            422,
            "validation_failed",
            "Case of another order",
            "the case belongs to another order",
            errors=[{"field": "case_id", "message": "a case of another order"}],
        )
    if case.status in WITHDRAWN or case.status == CaseStatus.closed:
        raise conflict(
            "case_not_active",
            f"case {case.id} is {case.status}: no cashback can be added to it",
            case_status=case.status,
        )
    if postage and await ledger.case_reserves_postage(ctx.session, case.id):
        raise dm.PolicyRefusal(
            dm.Rule.POSTAGE,
            "您好，这次退换货的运费已经为您申请过报销了，同一次退换货的运费只报销一次，感谢理解。",
            "The postage of this return has already been reimbursed or is being reimbursed; it is paid once "
            "per return. Thank you for understanding.",
            {"case_id": case.id},
        )


async def decide_cashback(
    ctx: Context, task_id: str, approve: bool, expected_version: int | None, reason: str | None
) -> CashbackTask:
    ctx.principal.require(Role.support)  # R-CASHBACK: the support group verifies
    task = await locked_task(ctx, task_id)
    if expected_version is not None and expected_version != task.version:
        raise conflict(
            "stale_version",
            f"the task is at version {task.version}, not {expected_version}",
            current_version=task.version,
        )
    if task.status != "pending_verification":
        raise conflict("invalid_transition", f"the task is already {task.status}", task_status=task.status)
    task.verified_by = ctx.principal.name
    task.verified_at = ctx.now
    task.version += 1
    task.updated_at = ctx.now
    if approve:  # the reservation made at creation already holds the money
        task.status = "approved"
        emit_cashback(ctx, task, "approved")
    else:
        task.status = "rejected"
        task.rejection_reason = reason or "rejected by support"
        await ledger.release(ctx.session, ctx.now, cashback_task_id=task.id)
        emit_task_change(ctx, task, contracts.CASHBACK_REJECTED)
    ctx.session.add(task)
    await ctx.session.flush()
    return task


async def locked_task(ctx: Context, task_id: str) -> CashbackTask:
    """The task, under its order's lock first (as every money command) and then its own."""
    task = await repo.get_task(ctx.session, ctx.principal, task_id)
    await ledger.lock_orders(ctx.session, None, task.order_id)
    return await repo.get_task(ctx.session, ctx.principal, task_id, for_update=True)


async def cancel_task(ctx: Context, task: CashbackTask, reason: str) -> None:
    """The grant behind a task was withdrawn: its reservation is released and, once approved, payout-worker
    is told not to pay it (aftersales.cashback.cancelled.v1). The caller holds the order's lock."""
    approved = task.status == "approved"
    task.status, task.cancelled_at, task.rejection_reason = "cancelled", ctx.now, reason
    task.version += 1
    task.updated_at = ctx.now
    ctx.session.add(task)
    await ledger.release(ctx.session, ctx.now, cashback_task_id=task.id)
    if approved:
        emit_cashback(ctx, task, "cancelled", reason=reason)


def request_clawback(ctx: Context, task: CashbackTask) -> None:
    """A cancel after the transfer: the money left; ops recovers it (the cashback register shows it)."""
    task.clawback_requested_at = ctx.now
    task.version += 1
    task.updated_at = ctx.now
    ctx.session.add(task)
    log_on_commit(
        ctx.session,
        log,
        "cashback %s was paid before its grant was withdrawn: clawback requested",
        task.id,
        cashback_task_id=task.id,
        order_id=task.order_id,
        shop_id=task.shop_id,
    )


def emit_cashback(ctx: Context, task: CashbackTask, what: str, reason: str = "") -> None:
    data: CashbackApproved | CashbackCancelled
    if what == "approved":
        data = CashbackApproved(
            cashback_task_id=task.id,
            order_id=task.order_id,
            shop_id=task.shop_id,
            case_id=task.case_id,
            reason=task.reason,
            amount=task.amount,
            payee=Payee(**task.payee),
            approved_at=ctx.now,
        )
    else:
        data = CashbackCancelled(
            cashback_task_id=task.id, order_id=task.order_id, shop_id=task.shop_id, reason=reason
        )
    data = ctx.approval_signer.sign(data)  # payout-worker acts only on what case-api signed
    contract = contracts.CASHBACK_APPROVED if what == "approved" else contracts.CASHBACK_CANCELLED
    add_event(ctx.session, contract, data, source=SOURCE, subject=task.id, at=ctx.now)


def emit_task_change(ctx: Context, task: CashbackTask, contract: contracts.Contract) -> None:
    """A task entered or refused: told to whoever follows cashback (storefront webhooks)."""
    data = CashbackTaskChanged(
        cashback_task_id=task.id,
        order_id=task.order_id,
        shop_id=task.shop_id,
        case_id=task.case_id,
        line_id=task.line_id,
        reason=task.reason,
        amount=task.amount,
        status=task.status,
        rejection_reason=task.rejection_reason,
        at=ctx.now,
    )
    add_event(ctx.session, contract, data, source=SOURCE, subject=task.id, at=ctx.now)
