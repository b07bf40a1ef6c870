"""What payout-worker does with each consumed event and each ops command, and the results it publishes.

aftersales.cashback.approved.v1 → one ledger entry per cashback task (R-CASHBACK-ONCE), due by the
cut-off of its working day (R-CASHBACK); held for review when it would pass a risk limit (limits.py); failed
at once when case-api signed it but the ledger cannot hold it (INVALID_APPROVAL). One that is not signed by
a case-api key payout-worker trusts (aftersales_shared.signing), or cannot even be read as an approval, is
refused: parked on the DLQ with no payout and no result, so that a forgery naming a real task changes
nothing.
aftersales.cashback.cancelled.v1 → a payout not yet submitted is cancelled; one that may have been paid
stands, and a clawback item is recorded for ops. A cancellation case-api did not sign is refused as an
approval is (a forged one would stop a genuine payment).
Ops: release a held payout (→ pending), or cancel a held or pending one (→ a failed result,
CANCELLED_BY_OPS). Results leave on payouts.results.v1 through the outbox, keyed by cashback task id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, TypeAlias

from aftersales_shared import contracts
from aftersales_shared.auth import Principal
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import Clock, as_utc
from aftersales_shared.consumer import BatchHandler, Handler, Refused
from aftersales_shared.db import insert_many, log_on_commit
from aftersales_shared.events import CashbackApproved, CashbackCancelled, CloudEvent, PayoutResult
from aftersales_shared.outbox import add_events
from aftersales_shared.problems import conflict, not_found
from aftersales_shared.signing import ApprovalVerifier, ResultSigner
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from . import repository as repo
from .limits import Limits, limit_day
from .models import CANCELLABLE, SENT, Payout, PayoutStatus
from .providers.base import MIN_AMOUNT
from .schedule import due_at

log = logging.getLogger(__name__)
SOURCE = "/payout-worker"
# failure_code of a payout (and of its failed result) that payout-worker could not take or ops cancelled
INVALID_APPROVAL = "INVALID_APPROVAL"
CANCELLED_BY_OPS = "CANCELLED_BY_OPS"
# The widths of the id columns an approval fills (models.Payout); the shared model limits the payee.
TASK_ID_LENGTH, ORDER_ID_LENGTH, SHOP_ID_LENGTH, CASE_ID_LENGTH = 40, 64, 64, 40


# ---------------------------------------------------------------- approvals


@dataclass(frozen=True)
class InvalidApproval:
    """An approval case-api signed that the ledger cannot hold as sent (`approval`, its ids cut to the
    columns), and why: it becomes a failed payout whose result releases the money."""

    approval: CashbackApproved
    problem: str

    @property
    def cashback_task_id(self) -> str:
        return self.approval.cashback_task_id


Approval: TypeAlias = CashbackApproved | InvalidApproval


async def read_approvals(events: Sequence[CloudEvent], verifier: ApprovalVerifier) -> list[Approval]:
    """The approval each event carries, its signature checked (all the events' together:
    `ApprovalVerifier.problems`), or what the ledger can hold of one it cannot take as sent. Raises
    `Refused`, before anything is written, for every event that is not an approval case-api signed: whoever
    can write to the topic can send one, only case-api can sign one."""
    parsed = [_parsed(e) for e in events]
    checked = iter(await verifier.problems([p for p in parsed if not isinstance(p, str)]))
    refused: dict[str, str] = {}
    for event, approval in zip(events, parsed, strict=True):
        if isinstance(approval, str):
            why = f"not authenticated: {approval}"
        elif (problem := next(checked)) is not None:
            why = f"not authenticated: {problem}"
        elif len(approval.cashback_task_id) > TASK_ID_LENGTH:
            width = len(approval.cashback_task_id)
            why = f"no result could name its task: its id has {width} characters, at most {TASK_ID_LENGTH}"
        else:
            continue
        refused[event.id] = _refusal(event, "approval", why)
    if refused:
        raise Refused(refused)
    return [_fit(p) for p in parsed if not isinstance(p, str)]


def _parsed(event: CloudEvent) -> CashbackApproved | str:
    """The event's approval, or why it cannot be read as one (and so cannot be authenticated)."""
    try:
        return CashbackApproved.model_validate(event.data)
    except ValidationError as exc:
        return "not an approval: " + _errors(exc)


def _refusal(event: CloudEvent, what: str, why: str) -> str:
    """Why an event is refused, as the DLQ keeps it: what it claims to be, why, and the task it names."""
    task = event.data.get("cashback_task_id")
    return f"{what} refused, {why} (cashback task {task!r:.60})"


def _errors(exc: ValidationError) -> str:
    """The first validation errors, without the values (which may be a payee's)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in exc.errors()[:3])


def _fit(approval: CashbackApproved) -> Approval:
    """The approval, or an InvalidApproval when an id is wider than the ledger's column (the shared model
    does not limit them; it does limit the payee and the amount; the task id was checked already)."""
    for name, value, width in (
        ("order_id", approval.order_id, ORDER_ID_LENGTH),
        ("shop_id", approval.shop_id, SHOP_ID_LENGTH),
        ("case_id", approval.case_id or "", CASE_ID_LENGTH),
    ):
        if len(value) > width:
            cut = {
                "order_id": approval.order_id[:ORDER_ID_LENGTH],
                "shop_id": approval.shop_id[:SHOP_ID_LENGTH],
                "case_id": (approval.case_id or "")[:CASE_ID_LENGTH] or None,
                "reason": approval.reason[:200],
            }
            return InvalidApproval(
                approval.model_copy(update=cut), f"{name}: {len(value)} characters, at most {width}"
            )
    return approval


def payout_row(
    data: Approval, *, payout_id: str, calendar: BusinessCalendar, cutoff: time, now: datetime
) -> dict[str, Any]:
    """The ledger entry of an approval, as column values (pending, or failed when it cannot be paid)."""
    status, failure_code, failure_message = PayoutStatus.pending, None, None
    if isinstance(data, InvalidApproval):
        status, failure_code = PayoutStatus.failed, INVALID_APPROVAL
        failure_message = f"payout-worker cannot pay this approval: {data.problem}"[:500]
        data = data.approval
    elif data.amount < MIN_AMOUNT:  # the provider refuses it anyway: say so at once
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
        "payee_account": data.payee.alipay_account,
        "payee_name": data.payee.name,
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


def read_cancellation(event: CloudEvent, verifier: ApprovalVerifier) -> CashbackCancelled:
    """The cancellation the event carries, its signature checked; raises `Refused` for one case-api did
    not sign (or that cannot be read as one, and so cannot be authenticated)."""
    try:
        cancellation = CashbackCancelled.model_validate(event.data)
        problem = verifier.problem(cancellation)
    except ValidationError as exc:
        problem = "not a cancellation: " + _errors(exc)
    if problem is not None:
        raise Refused({event.id: _refusal(event, "cancellation", f"not authenticated: {problem}")})
    return cancellation


async def cancel_for_task(session: AsyncSession, data: CashbackCancelled, now: datetime) -> None:
    """The task was cancelled in case-api (which has released its money already, so no result): a
    payout not yet sent is cancelled; one that may have been paid stands, as a clawback item for ops."""
    payout = await repo.payout_for_task(session, data.cashback_task_id, for_update=True)
    if payout is None:
        return
    ids: dict[str, Any] = {
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
        log_on_commit(
            session,
            log,
            "cashback cancelled after its payout was %s: it stands, recorded as a clawback item",
            payout.status,
            level=logging.WARNING,
            **ids,
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
        await cancel_for_task(session, read_cancellation(event, verifier), clock.now())

    return {contracts.CASHBACK_CANCELLED.type: cashback_cancelled}, {
        contracts.CASHBACK_APPROVED.type: cashback_approved
    }
