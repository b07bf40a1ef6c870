"""What payout-worker does with each consumed event and each ops command, and the results it publishes.

aftersales.cashback.approved.v1 → one ledger entry per cashback task (R-CASHBACK-ONCE), due by the
cut-off of its working day (R-CASHBACK); held for review when it would pass a risk limit (limits.py); failed
at once when it cannot be paid as sent (INVALID_APPROVAL) or is not signed by a case-api key payout-worker
trusts (UNAUTHENTICATED_APPROVAL: aftersales_shared.signing), so that it is never paid.
aftersales.cashback.cancelled.v1 → a payout not yet submitted is cancelled; one that may have been paid
stands, and a clawback item is recorded for ops.
Ops: release a held payout (→ pending), or cancel a held or pending one (→ a failed result,
CANCELLED_BY_OPS). Results leave on payouts.results.v1 through the outbox, keyed by cashback task id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time
from decimal import Decimal
from typing import Any, TypeAlias

from aftersales_shared import contracts
from aftersales_shared.auth import Principal
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import Clock, as_utc
from aftersales_shared.consumer import BatchHandler, Handler
from aftersales_shared.db import insert_many, log_on_commit
from aftersales_shared.events import CashbackApproved, CashbackCancelled, CloudEvent, PayoutResult
from aftersales_shared.fields import Instant
from aftersales_shared.money import MAX_AMOUNT, to_money
from aftersales_shared.outbox import add_events
from aftersales_shared.problems import conflict, not_found
from aftersales_shared.signing import ApprovalVerifier, ResultSigner
from pydantic import TypeAdapter, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from . import repository as repo
from .limits import Limits, limit_day
from .models import CANCELLABLE, PAYEE_LENGTH, SENT, Payout, PayoutStatus
from .providers.base import MIN_AMOUNT
from .schedule import due_at

log = logging.getLogger(__name__)
SOURCE = "/payout-worker"
# failure_code of a payout (and of its failed result) that payout-worker refused or ops cancelled
INVALID_APPROVAL = "INVALID_APPROVAL"
UNAUTHENTICATED_APPROVAL = "UNAUTHENTICATED_APPROVAL"
CANCELLED_BY_OPS = "CANCELLED_BY_OPS"
# The widths of the columns an approval fills (models.Payout); payee fields are PAYEE_LENGTH.
TASK_ID_LENGTH, ORDER_ID_LENGTH, SHOP_ID_LENGTH, CASE_ID_LENGTH = 40, 64, 64, 40
_INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)


# ---------------------------------------------------------------- approvals


@dataclass(frozen=True)
class InvalidApproval:
    """An approval payout-worker cannot pay as sent, read as far as it goes (payee fields cut to the
    columns, an unreadable amount as 0.00): it becomes a failed payout whose result releases the money."""

    cashback_task_id: str
    order_id: str
    shop_id: str
    case_id: str | None
    reason: str
    amount: Decimal
    payee_account: str
    payee_name: str
    approved_at: datetime
    problem: str
    code: str = INVALID_APPROVAL


Approval: TypeAlias = CashbackApproved | InvalidApproval


async def read_approvals(events: Sequence[CloudEvent], verifier: ApprovalVerifier) -> list[Approval]:
    """The approval each event carries, or what can be read of one payout-worker cannot take; the
    signatures are checked together (`ApprovalVerifier.problems`). Raises ValueError when an event names no
    cashback task and order to answer to (it goes to the DLQ)."""
    parsed = [_parsed(e) for e in events]
    checked = iter(await verifier.problems([p for p in parsed if not isinstance(p, str)]))
    return [
        _approval(e, p, None if isinstance(p, str) else next(checked))
        for e, p in zip(events, parsed, strict=True)
    ]


def _parsed(event: CloudEvent) -> CashbackApproved | str:
    """The event's approval, or why it is not one."""
    try:
        return CashbackApproved.model_validate(event.data)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in exc.errors()[:3]
        )


def _approval(event: CloudEvent, parsed: CashbackApproved | str, unauthenticated: str | None) -> Approval:
    if isinstance(parsed, str):
        return _lenient(event, parsed)
    if unauthenticated is not None:
        return _unauthenticated(event, parsed, unauthenticated)
    if (unfit := _unfit(parsed)) is None:
        return parsed
    return _lenient(event, unfit)


def _unauthenticated(event: CloudEvent, approval: CashbackApproved, problem: str) -> InvalidApproval:
    """Anyone who can write to the topic can send an approval; only case-api can sign one. Never paid:
    failed at once, with a result (a forged approval naming a real task fails that task, loudly)."""
    log.warning(
        "approval refused, not authenticated: %s",
        problem,
        extra={
            "event_id": event.id,
            "cashback_task_id": approval.cashback_task_id[:TASK_ID_LENGTH],
            "order_id": approval.order_id[:ORDER_ID_LENGTH],
            "shop_id": approval.shop_id[:SHOP_ID_LENGTH],
        },
    )
    return replace(_lenient(event, problem), code=UNAUTHENTICATED_APPROVAL)


def _unfit(approval: CashbackApproved) -> str | None:
    """What a valid approval carries that the ledger cannot hold (the shared model may not say)."""
    for name, value, width in (
        ("cashback_task_id", approval.cashback_task_id, TASK_ID_LENGTH),
        ("order_id", approval.order_id, ORDER_ID_LENGTH),
        ("shop_id", approval.shop_id, SHOP_ID_LENGTH),
        ("case_id", approval.case_id or "", CASE_ID_LENGTH),
        ("payee.alipay_account", approval.payee.alipay_account, PAYEE_LENGTH),
        ("payee.name", approval.payee.name, PAYEE_LENGTH),
    ):
        if len(value) > width:
            return f"{name}: {len(value)} characters, at most {width}"
    if abs(approval.amount) > MAX_AMOUNT:
        return f"amount: at most {MAX_AMOUNT}"
    return None


def _text(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def _lenient(event: CloudEvent, problem: str) -> InvalidApproval:
    data = event.data
    task_id, order_id = data.get("cashback_task_id"), data.get("order_id")
    if not (
        isinstance(task_id, str) and 0 < len(task_id) <= TASK_ID_LENGTH and "\x00" not in task_id and order_id
    ):
        raise ValueError(f"not an approval payout-worker can answer (no cashback task and order): {problem}")
    sent_payee = data.get("payee")
    payee: dict[str, Any] = sent_payee if isinstance(sent_payee, dict) else {}
    try:
        amount = to_money(data.get("amount"))
        if abs(amount) > MAX_AMOUNT:
            raise ValueError("out of range")
    except (TypeError, ValueError):
        amount = Decimal("0.00")
    try:
        approved_at = _INSTANT.validate_python(data.get("approved_at"))
    except ValidationError:
        approved_at = event.time
    return InvalidApproval(
        cashback_task_id=task_id,
        order_id=_text(order_id)[:ORDER_ID_LENGTH],
        shop_id=_text(data.get("shop_id"))[:SHOP_ID_LENGTH],
        case_id=_text(data.get("case_id"))[:CASE_ID_LENGTH] or None,
        reason=_text(data.get("reason"))[:200],
        amount=amount,
        payee_account=_text(payee.get("alipay_account"))[:PAYEE_LENGTH],
        payee_name=_text(payee.get("name"))[:PAYEE_LENGTH],
        approved_at=approved_at,
        problem=problem,
    )


def payout_row(
    data: Approval, *, payout_id: str, calendar: BusinessCalendar, cutoff: time, now: datetime
) -> dict[str, Any]:
    """The ledger entry of an approval, as column values (pending, or failed when it cannot be paid)."""
    status, failure_code, failure_message = PayoutStatus.pending, None, None
    if isinstance(data, InvalidApproval):
        status, failure_code = PayoutStatus.failed, data.code
        failure_message = f"payout-worker cannot pay this approval: {data.problem}"[:500]
        payee_account, payee_name = data.payee_account, data.payee_name
    else:
        payee_account, payee_name = data.payee.alipay_account, data.payee.name
        if data.amount < MIN_AMOUNT:  # the provider refuses it anyway: say so at once
            status, failure_code = PayoutStatus.failed, "AMOUNT_BELOW_MINIMUM"
            failure_message = f"transfers start at {MIN_AMOUNT} yuan"
    return {
        "id": payout_id,
        "out_biz_no": payout_id,  # the provider key: fixed here, before any call
        "cashback_task_id": data.cashback_task_id,
        "order_id": data.order_id,
        "shop_id": data.shop_id,
        "case_id": data.case_id,
        "reason": data.reason,
        "amount": data.amount,
        "payee_account": payee_account,
        "payee_name": payee_name,
        "status": status,
        "batch_id": None,
        "approved_at": as_utc(data.approved_at),
        "due_at": due_at(data.approved_at, calendar, cutoff),
        "attempts": 0,
        "check_after": None,
        "provider_order_id": None,
        "provider_fund_order_id": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "submitted_at": None,
        "paid_at": None,
        "hold_reason": None,
        "reviewed_by": None,
        "reviewed_at": None,
        "review_note": None,
        "clawback_requested_at": None,
        "clawback_reason": None,
        "created_at": now,
        "updated_at": now,
    }


async def open_payouts(
    session: AsyncSession,
    approvals: Sequence[Approval],
    *,
    new_id: Callable[[], str],
    calendar: BusinessCalendar,
    cutoff: time,
    limits: Limits,
    results: ResultQueue,
) -> None:
    """One ledger entry per cashback task, however often its approval arrives (R-CASHBACK-ONCE). One that
    would pass a risk limit is held for review; earlier approvals of the batch count toward later ones."""
    by_task = {a.cashback_task_id: a for a in approvals}
    valid = [a for a in by_task.values() if isinstance(a, CashbackApproved)]
    # Check and insert in one step across replicas and batches: lock what we count before counting it.
    await repo.lock_limits(session, {a.shop_id for a in valid}, {a.payee.alipay_account for a in valid})
    known = await repo.tasks_with_payouts(session, list(by_task))
    fresh = [a for task, a in by_task.items() if task not in known]
    if not fresh:
        return
    countable = [a for a in fresh if isinstance(a, CashbackApproved) and a.amount >= MIN_AMOUNT]
    totals = await repo.day_totals(
        session,
        {limit_day(a.approved_at) for a in countable},
        {a.shop_id for a in countable},
        {a.payee.alipay_account for a in countable},
    )
    now = results.clock.now()
    rows = []
    for a in fresh:
        row = payout_row(a, payout_id=new_id(), calendar=calendar, cutoff=cutoff, now=now)
        rows.append(row)
        if row["status"] != PayoutStatus.pending or not isinstance(a, CashbackApproved):
            continue
        claim: dict[str, Any] = {
            "amount": a.amount,
            "payee": a.payee.alipay_account,
            "shop_id": a.shop_id,
            "day": limit_day(a.approved_at),
        }
        if (reason := totals.hold_reason(limits, **claim)) is None:
            totals.take(**claim)
            continue
        row.update(status=PayoutStatus.held_for_review, hold_reason=reason)
        log_on_commit(
            session,
            log,
            "payout held for review: %s",
            reason,
            payout_id=row["id"],
            cashback_task_id=a.cashback_task_id,
            order_id=a.order_id,
            shop_id=a.shop_id,
        )
    await insert_many(session, repo.table(Payout), rows)
    await results.add(session, [result_of(r) for r in rows if r["status"] == PayoutStatus.failed])


# ---------------------------------------------------------------- results


def result_of(row: Mapping[str, Any]) -> PayoutResult:
    """The result of a ledger row (ours and typed already: not validated again, as a batch records a
    thousand at once)."""
    fields: dict[str, Any] = {
        "payout_id": row["id"],
        "cashback_task_id": row["cashback_task_id"],
        "order_id": row["order_id"],
        "amount": row["amount"],
        "status": str(row["status"]),
        "out_biz_no": row["out_biz_no"],
        "provider_reference": row.get("provider_order_id"),
        "failure_code": row.get("failure_code"),
        "paid_at": row.get("paid_at"),
    }
    return PayoutResult.model_construct(**fields)


@dataclass(frozen=True)
class ResultQueue:
    """Where paid/failed results go: signed with payout-worker's result key (case-api applies only a result
    it can authenticate: a forged `failed` would give back money that was paid), onto payouts.results.v1
    through the outbox, in the transaction that recorded them (a batch records up to 1,000 at once)."""

    signer: ResultSigner
    clock: Clock

    async def add(self, session: AsyncSession, results: Sequence[PayoutResult]) -> None:
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
            source=SOURCE,
            events=[(contracts.PAYOUT_EVENTS[r.status], r.payout_id, self.signer.sign(r)) for r in results],
            at=self.clock.now(),
        )


# ---------------------------------------------------------------- cancellation and review


async def cancel_for_task(session: AsyncSession, data: CashbackCancelled, now: datetime) -> None:
    """The task was cancelled in case-api (which has released its money already, so no result): a
    payout not yet sent is cancelled; one that may have been paid stands, as a clawback item for ops."""
    payout = await repo.payout_for_task(session, data.cashback_task_id, for_update=True)
    if payout is None:
        return
    ids = {
        "payout_id": payout.id,
        "cashback_task_id": payout.cashback_task_id,
        "order_id": payout.order_id,
        "shop_id": payout.shop_id,
    }
    if payout.status in CANCELLABLE:
        # Under the row lock: the sender claims only rows still `batched` (repository.claim_batched).
        was = payout.status
        payout.status, payout.failure_message, payout.updated_at = PayoutStatus.cancelled, data.reason, now
        session.add(payout)
        await session.flush()
        if payout.batch_id is not None:
            await repo.complete_batches(session, {payout.batch_id}, now)
        log_on_commit(session, log, "payout cancelled with its cashback task (was %s)", was, **ids)
    elif payout.status in SENT:
        if payout.clawback_requested_at is None:
            payout.clawback_requested_at, payout.clawback_reason = now, data.reason
            payout.updated_at = now
            session.add(payout)
        log.warning(
            "cashback cancelled after its payout was %s: it stands, recorded as a clawback item",
            payout.status,
            extra=ids,
        )


async def _locked(session: AsyncSession, payout_id: str, principal: Principal) -> Payout:
    """The payout under its row lock, as far as the key's shops go (another shop's is not found)."""
    payout = await repo.lock_payout(session, payout_id)
    if payout is None:
        raise not_found("payout", payout_id)
    principal.require_shop(payout.shop_id, hide=True, what="payout", ident=payout_id)
    return payout


def _review(
    payout: Payout, status: PayoutStatus, principal: Principal, note: str | None, now: datetime
) -> None:
    now = as_utc(now)
    payout.status, payout.updated_at = status, now
    payout.reviewed_by, payout.reviewed_at, payout.review_note = principal.name[:200], now, note


async def release_payout(
    session: AsyncSession, payout_id: str, principal: Principal, note: str | None, results: ResultQueue
) -> Payout:
    """held_for_review → pending: paid with the batch of its due time (the cut-off of its approval
    day), or by the next batch when that has passed. Flushes; the caller commits."""
    payout = await _locked(session, payout_id, principal)
    if payout.status != PayoutStatus.held_for_review:
        raise conflict(
            "payout_not_held", f"only a payout held for review can be released; this one is {payout.status}"
        )
    _review(payout, PayoutStatus.pending, principal, note, results.clock.now())
    session.add(payout)
    await session.flush()
    log_on_commit(
        session,
        log,
        "payout released by ops (held: %s)",
        payout.hold_reason,
        payout_id=payout.id,
        cashback_task_id=payout.cashback_task_id,
        order_id=payout.order_id,
        shop_id=payout.shop_id,
    )
    return payout


async def cancel_payout(
    session: AsyncSession, payout_id: str, principal: Principal, note: str | None, results: ResultQueue
) -> Payout:
    """held_for_review or pending → cancelled, with a failed result (CANCELLED_BY_OPS) so that case-api
    releases the money. Flushes; the caller commits."""
    payout = await _locked(session, payout_id, principal)
    if payout.status not in (PayoutStatus.held_for_review, PayoutStatus.pending):
        raise conflict(
            "payout_not_cancellable",
            f"only a payout held for review or pending can be cancelled; this one is {payout.status}",
        )
    _review(payout, PayoutStatus.cancelled, principal, note, results.clock.now())
    payout.failure_code, payout.failure_message = CANCELLED_BY_OPS, note or "cancelled by ops"
    session.add(payout)
    await session.flush()
    await results.add(session, [result_of({**payout.model_dump(), "status": PayoutStatus.failed})])
    return payout


def make_handlers(
    clock: Clock,
    calendar: BusinessCalendar,
    cutoff: time,
    new_id: Callable[[], str],
    limits: Limits,
    verifier: ApprovalVerifier,
    results: ResultQueue,
) -> tuple[dict[str, Handler], dict[str, BatchHandler]]:
    """(handlers, batch handlers): approvals arrive in bursts (a support shift approving a day's cashback),
    so a run of them opens its payouts together."""

    async def cashback_approved(session: AsyncSession, events: list[CloudEvent]) -> None:
        await open_payouts(
            session,
            await read_approvals(events, verifier),
            new_id=new_id,
            calendar=calendar,
            cutoff=cutoff,
            limits=limits,
            results=results,
        )

    async def cashback_cancelled(session: AsyncSession, event: CloudEvent) -> None:
        await cancel_for_task(session, CashbackCancelled.model_validate(event.data), clock.now())

    return {contracts.CASHBACK_CANCELLED.type: cashback_cancelled}, {
        contracts.CASHBACK_APPROVED.type: cashback_approved
    }
