"""Cases: opened by the policy engine with their money reserved, then moved by commands.

`act` locks the order and the case, asks the case aggregate (domain/case.py) what a command does, stores
the new state with its timeline entry and event, and carries out the effects the aggregate names: the
ledger's grants and releases, a cashback task, a reship order, the registers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersales_shared import contracts
from aftersales_shared.auth import Role
from aftersales_shared.db import insert_rows, log_on_commit
from aftersales_shared.events import CaseEvent as CaseEventData
from aftersales_shared.events import Payee
from aftersales_shared.ids import new_id
from aftersales_shared.money import fmt
from aftersales_shared.outbox import outbox_row
from aftersales_shared.problems import Problem, conflict
from pydantic import ValidationError
from sqlmodel import SQLModel, select

from .. import ledger, messages
from .. import repository as repo
from ..domain import case as dc
from ..domain import commands, policy
from ..domain import ledger as dl
from ..domain import model as dm
from ..domain.case import CaseDetails, ConsultationAnswer
from ..domain.workflow import MOVES, Action, CaseStatus, after_intake
from ..models import (
    Case,
    CaseEvent,
    CaseEvidence,
    CashbackTask,
    Evidence,
    InspectionEntry,
    LedgerEntry,
    LogisticsFollowUp,
    Order,
    ReshipOrder,
    RetentionEntry,
)
from ..schemas import ActionBody, AttachEvidenceBody, CaseCreate, CreateReshipBody
from .cashback import LIVE_TASK, cancel_task, emit_cashback, request_clawback
from .context import SOURCE, Context
from .orders import domain_order

log = logging.getLogger(__name__)
S = CaseStatus
CARRIER_REASONS = {
    "damaged",
    "lost",
    "missing_item",
    "wrong_item",
    "no_tracking_update",
    "false_delivery",
    "empty_parcel",
}
PAST: dict[str, str] = {
    Action.record_retention: "retention_recorded",
    Action.approve: "approved",
    Action.reject: "rejected",
    Action.withdraw: "withdrawn",
    Action.attach_evidence: "evidence_attached",
    Action.submit_return_tracking: "return_tracking_submitted",
    Action.record_receipt: "return_received",
    Action.record_inspection: "inspected",
    Action.refund: "refunded",
    Action.request_intercept: "intercept_requested",
    Action.confirm_intercept: "intercepted",
    Action.report_to_carrier: "reported_to_carrier",
    Action.record_carrier_verdict: "carrier_verdict_recorded",
    Action.create_reship: "reshipped",
    Action.ship_replacement: "replacement_shipped",
    Action.close: "closed",
}


# ---------------------------------------------------------------- open


async def open_case(ctx: Context, body: CaseCreate) -> Case:
    """Decide the request and reserve its money under the order's lock (and the new order's, for price
    protection): R-COMP-CAP, R-POSTAGE and R-PRICE-PROTECT-ONCE hold however many arrive at once."""
    ctx.principal.require(Role.storefront, Role.support)
    named = [body.order_id] + ([body.new_order_id] if body.new_order_id is not None else [])
    orders = await ledger.lock_orders_with_lines(ctx.session, ctx.principal, *named)
    order = orders[body.order_id][0]
    evidence = await repo.evidence_by_ids(ctx.session, body.evidence_ids)
    new_order = None
    if body.new_order_id is not None:
        new_order = domain_order(*orders[body.new_order_id])
    request = dm.CaseRequest(
        remedy=dm.Remedy(body.remedy),
        reason=dm.Reason(body.reason),
        lines=tuple(dm.CaseLine(line_id=li.line_id, quantity=li.quantity) for li in body.lines),
        amount=body.amount,
        images=_distinct(evidence, "image"),
        videos=_distinct(evidence, "video"),
        new_order=new_order,
        new_unit_price=body.new_unit_price,
    )
    domain = domain_order(*orders[body.order_id])
    decision = policy.evaluate(
        domain, request, await ledger.line_history(ctx.session, order.order_id), ctx.now
    )
    claims = _price_claims(domain, new_order, decision)
    if claims and new_order is not None:
        dl.check_price_claims(claims, await ledger.price_claims(ctx.session, new_order.order_id))
    status = after_intake(decision.evidence_missing, decision.needs_retention)
    case = Case(
        id=new_id("case"),
        order_id=order.order_id,
        shop_id=order.shop_id,
        remedy=body.remedy,
        reason=body.reason,
        status=status,
        stage=decision.stage,
        description=body.description,
        lines=[li.model_dump() for li in body.lines],
        amount=decision.amount,
        line_amounts={k: fmt(v) for k, v in decision.line_amounts.items()},
        details=_intake_details(body, decision),
        needs_retention=decision.needs_retention,
        evidence_missing=decision.evidence_missing,
        created_by=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    opened = {"rules": list(decision.rules), "request": body.model_dump(mode="json")}
    # The case, its money, its timeline entry and its event: one statement (one round trip on PostgreSQL)
    await insert_rows(
        ctx.session,
        case,
        *_reservations(ctx, case, decision, claims),
        *change_rows(ctx, case, "open", None, opened),
    )
    await _attach(ctx, case, evidence, new_case=True)
    if body.reason in CARRIER_REASONS:
        _register_carrier_problem(ctx, case, order, [e.id for e in evidence])
    return case


KIND_BY_REMEDY = {"reship": "reship", "price_protection": "price_protection", "cashback": "cashback"}


def _price_claims(
    order: dm.Order, new_order: dm.Order | None, decision: dm.Decision
) -> dict[str, tuple[str, str]]:
    """R-PRICE-PROTECT-ONCE: per case line, the new order's line (same SKU) that evidences its difference."""
    if new_order is None or decision.reason is not dm.Reason.PRICE_DROP:
        return {}
    claims = {}
    for line_id in decision.line_amounts:
        sku = order.line(line_id).sku
        new_line = next(line for line in new_order.lines if line.sku == sku)  # the policy found it
        claims[line_id] = (new_order.order_id, new_line.line_id)
    return claims


def _reservations(
    ctx: Context, case: Case, decision: dm.Decision, claims: dict[str, tuple[str, str]]
) -> list[LedgerEntry]:
    """R-COMP-CAP / R-POSTAGE: the case's money (or reshipped goods' value) is reserved as it opens."""
    kind = KIND_BY_REMEDY.get(case.remedy, "refund")
    return [
        entry
        for amounts, bucket, entry_kind in (
            (decision.line_amounts, dl.Bucket.GOODS, kind),
            (decision.shipping_amounts, dl.Bucket.POSTAGE, "shipping_fee"),
        )
        for entry in ledger.reservations(
            order_id=case.order_id,
            amounts=amounts,
            bucket=bucket,
            kind=entry_kind,
            now=ctx.now,
            case_id=case.id,
            claims=claims,
        )
    ]


def _distinct(evidence: list[Evidence], kind: str) -> int:
    """R-EVIDENCE counts different files: the same id sent twice, or the same bytes uploaded twice, is one."""
    return len({e.sha256 for e in evidence if e.kind == kind})


def _intake_details(body: CaseCreate, decision: dm.Decision) -> dict[str, Any]:
    return CaseDetails(
        rules=decision.rules,
        deadline=decision.deadline,
        new_order_id=body.new_order_id,
        shipping_amounts=decision.shipping_amounts,
        consultation=decision.consultation and ConsultationAnswer.of(decision.consultation),  # R-USAGE
    ).stored()


async def _attach(
    ctx: Context, case: Case, evidence: list[Evidence], *, new_case: bool = False
) -> list[dict[str, Any]]:
    """Link files to the case; a file already backing another order's case is flagged (`reused`)."""
    if not evidence:
        return []
    attached = []
    known = set() if new_case else {e.id for _, e in await repo.case_evidence(ctx.session, case.id)}
    for item in evidence:
        if item.id in known:
            continue
        # Only the uploader or support may attach a file, and only to a case of a shop the uploader serves.
        uploader_serves = item.shops is None or case.shop_id in item.shops
        if not uploader_serves or (
            item.key_id != ctx.principal.key_id and not ctx.principal.has_any([Role.support])
        ):
            raise Problem(404, "not_found", "evidence not found", f"no evidence {item.id!r} here")
        # Flag the reuse, but name the other order only when it is of this case's shop.
        reused, same_shop_order = await repo.reuse_of(ctx.session, item.sha256, case.order_id, case.shop_id)
        ctx.session.add(
            CaseEvidence(
                case_id=case.id,
                evidence_id=item.id,
                order_id=case.order_id,
                sha256=item.sha256,
                reused=reused,
                reused_from_order_id=same_shop_order,
                attached_at=ctx.now,
            )
        )
        known.add(item.id)
        attached.append(
            {
                "evidence_id": item.id,
                "kind": item.kind,
                "reused": reused,
                "reused_from_order_id": same_shop_order,
            }
        )
    await ctx.session.flush()
    return attached


def _register_carrier_problem(ctx: Context, case: Case, order: Order, evidence_ids: list[str]) -> None:
    shipment = order.shipment or {}
    ctx.session.add(
        LogisticsFollowUp(
            id=new_id("lfu"),
            case_id=case.id,
            order_id=order.order_id,
            shop_id=order.shop_id,
            carrier=shipment.get("carrier"),
            tracking_no=shipment.get("tracking_no"),
            problem=case.reason,
            evidence_ids=evidence_ids,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
    )


def record(ctx: Context, case: Case, action: str, from_status: str | None, data: dict[str, Any]) -> None:
    """The timeline entry and the outbox event of one change, added to the session's transaction."""
    ctx.session.add_all(change_rows(ctx, case, action, from_status, data))


def change_rows(
    ctx: Context, case: Case, action: str, from_status: str | None, data: dict[str, Any]
) -> list[SQLModel]:
    """The timeline entry and the outbox event of one change, for the caller to write in its transaction
    (`record` adds them to the session; a new case inserts them with its own row). A workflow action's
    event is named in the past tense (`approve` → `aftersales.case.approved.v1`); a note is named as is.
    The change is logged once it commits, and the buyer is told what they must hear of it."""
    contract = contracts.case_event("opened" if action == "open" else PAST.get(action, action))
    event = outbox_row(
        ctx.session,
        contract,
        CaseEventData(
            case_id=case.id,
            order_id=case.order_id,
            shop_id=case.shop_id,
            remedy=case.remedy,
            reason=case.reason,
            status=case.status,
            action=action,
            amount=case.amount,
            version=case.version,
            data=data,
        ),
        source=SOURCE,
        subject=case.id,
        at=ctx.now,
    )
    log_on_commit(
        ctx.session,
        log,
        "case %s: %s → %s",
        action,
        from_status or "new",
        case.status,
        case_id=case.id,
        order_id=case.order_id,
        shop_id=case.shop_id,
        action=action,
        event_id=event.event_id,
        event_type=contract.type,
    )
    messages.on_case_change(ctx, case, action, data)  # R-MESSAGES: what the buyer is told of it
    timeline = CaseEvent(
        id=new_id("cev"),
        case_id=case.id,
        action=action,
        actor=ctx.principal.name,
        from_status=from_status,
        to_status=case.status,
        data=data,
        at=ctx.now,
    )
    return [timeline, event]


# ---------------------------------------------------------------- act


async def act(ctx: Context, case_id: str, action: Action, body: ActionBody, if_match: int | None) -> Case:
    """Run one workflow action on the case, as the caller (or a named system actor)."""
    ctx.principal.require(*MOVES[action].roles)
    row = await locked_case(ctx, case_id)
    check_version(row, body.expected_version if body.expected_version is not None else if_match)
    case = aggregate(row)
    dc.check_move(case, action)
    fields = body.model_dump(exclude={"expected_version"})
    command = commands.from_request(action, fields, **await _prepare(ctx, row, action, body))
    change = dc.handle(case, command, ctx.now)
    from_status = row.status
    _store(row, change.case)
    data = dict(change.data)
    for effect in change.effects:
        data |= await EFFECTS[type(effect)](ctx, row, effect)
    touch(ctx, row, action, from_status, data)
    await ctx.session.flush()
    return row


def check_version(row: Case, expected: int | None) -> None:
    """409 when the caller saw another version of the case than the one it is at now."""
    if expected is not None and expected != row.version:
        raise conflict(
            "stale_version",
            f"the case is at version {row.version}, not {expected}",
            current_version=row.version,
        )


async def locked_case(ctx: Context, case_id: str) -> Case:
    """The case, read under its order's lock first and then its own: every action of a case can change what
    the order may still receive, and the order lock always comes first (no deadlock with a new case)."""
    case = await repo.get_case(ctx.session, ctx.principal, case_id)
    await ledger.lock_orders(ctx.session, None, case.order_id)
    return await repo.get_case(ctx.session, ctx.principal, case_id, for_update=True)


def aggregate(row: Case) -> dc.Case:
    return dc.Case(
        id=row.id,
        remedy=dm.Remedy(row.remedy),
        reason=dm.Reason(row.reason),
        status=S(row.status),
        stage=dm.Stage(row.stage),
        amount=row.amount,
        lines=tuple(dm.CaseLine(line_id=li["line_id"], quantity=li["quantity"]) for li in row.lines),
        details=CaseDetails.model_validate(row.details),
        needs_retention=row.needs_retention,
        evidence_missing=row.evidence_missing,
    )


def _store(row: Case, case: dc.Case) -> None:
    row.status = case.status
    row.details = case.details.stored()
    row.evidence_missing = case.evidence_missing


def touch(ctx: Context, case: Case, action: str, from_status: str | None, data: dict[str, Any]) -> None:
    """A change of the case: its version, and its timeline entry and event."""
    case.version += 1
    case.updated_at = ctx.now
    ctx.session.add(case)
    record(ctx, case, action, from_status, data)


async def _prepare(ctx: Context, row: Case, action: Action, body: ActionBody) -> dict[str, Any]:
    """What a command needs that only the service can find: files linked and counted, due times, ids."""
    if isinstance(body, AttachEvidenceBody):
        attached = await _attach(ctx, row, await repo.evidence_by_ids(ctx.session, body.evidence_ids))
        files = [e for _, e in await repo.case_evidence(ctx.session, row.id)]
        policy.check_photos(_distinct(files, "image"))  # R-EVIDENCE: refused, so nothing stays attached
        missing = policy.missing_evidence(
            dm.Reason(row.reason), _distinct(files, "image"), _distinct(files, "video")
        )
        return {"attached": tuple(attached), "evidence_missing": missing}
    if action is Action.ship_replacement:
        order = await repo.get_order(ctx.session, row.order_id)
        if getattr(body, "tracking_no", None) == (order.shipment or {}).get("tracking_no"):  # R-EXCHANGE-7D
            raise dm.InvalidRequest("tracking_no", "is the original parcel's, not a replacement")
        return {}
    if action is Action.report_to_carrier:
        return {"sla_due_at": ctx.calendar.add_working_days(ctx.now, ctx.sla_working_days)}  # R-LOST
    if isinstance(body, CreateReshipBody):
        lines = body.reship_lines and tuple(dm.CaseLine(li.line_id, li.quantity) for li in body.reship_lines)
        return {"reship_order_id": new_id("rs"), "lines": lines}
    return {}


# ---------------------------------------------------------------- effects


async def _withdraw_money(ctx: Context, case: Case, effect: dc.WithdrawMoney) -> dict[str, Any]:
    cancelled, clawbacks = [], []
    for task in await repo.case_cashback_tasks(ctx.session, case.id):
        if task.status in LIVE_TASK:
            await cancel_task(ctx, task, f"case {case.id} {case.status}")
            cancelled.append(task.id)
        elif task.status == "paid" and task.clawback_requested_at is None:
            request_clawback(ctx, task)
            clawbacks.append(task.id)
    await ledger.release(ctx.session, ctx.now, case_id=case.id)
    return {"cashback_cancelled": cancelled} | ({"clawback_requested": clawbacks} if clawbacks else {})


async def _release_unspent(ctx: Context, case: Case, effect: dc.ReleaseUnspent) -> dict[str, Any]:
    await ledger.release(ctx.session, ctx.now, case_id=case.id)
    return {}


async def _grant(ctx: Context, case: Case, effect: dc.GrantMoney) -> dict[str, Any]:
    await ledger.grant(ctx.session, ctx.now, case_id=case.id, total=effect.total)
    return {}


async def _pay_as_cashback(ctx: Context, case: Case, effect: dc.PayAsCashback) -> dict[str, Any]:
    return {"cashback_task_id": (await _cashback_for_case(ctx, case)).id}


async def _keep_retention(ctx: Context, case: Case, effect: dc.KeepRetention) -> dict[str, Any]:
    ctx.session.add(
        RetentionEntry(
            id=new_id("ret"),
            case_id=case.id,
            order_id=case.order_id,
            shop_id=case.shop_id,
            remedy=case.remedy,
            reason=case.reason,
            real_reason=effect.real_reason,
            offer=effect.offer,
            outcome=effect.outcome,
            recorded_by=ctx.principal.name,
            recorded_at=ctx.now,
        )
    )
    return {}


async def _follow_up_carrier(ctx: Context, case: Case, effect: dc.FollowUpCarrier) -> dict[str, Any]:
    entry = await _follow_up(ctx, case)
    if effect.sla_due_at is not None:
        entry.reported_at, entry.sla_due_at = ctx.now, effect.sla_due_at
    if effect.verdict is not None:
        entry.verdict = effect.verdict
        entry.outcome = "carrier confirmed" if effect.confirmed else "carrier did not confirm"
    entry.updated_at = ctx.now
    ctx.session.add(entry)
    return {}


async def _ship_reship(ctx: Context, case: Case, effect: dc.ShipReship) -> dict[str, Any]:
    order = await repo.get_order(ctx.session, case.order_id)
    lines = {li.line_id: li for li in await repo.order_lines(ctx.session, case.order_id)}
    reship = ReshipOrder(
        id=effect.reship_order_id,
        case_id=case.id,
        order_id=case.order_id,
        shop_id=case.shop_id,
        lines=[
            {
                "line_id": li.line_id,
                "quantity": li.quantity,
                "sku": lines[li.line_id].sku,
                "name": lines[li.line_id].name,
                "size": lines[li.line_id].size,
                "color": lines[li.line_id].color,
            }
            for li in effect.lines
        ],
        # a reship case has no amount: its value is the goods' value the case booked per line (R-COMP-CAP)
        value=sum((Decimal(v) for v in case.line_amounts.values()), Decimal("0.00")),
        note=effect.notes or f"reship for {case.reason} ({case.id})",
        created_at=ctx.now,
    )
    ctx.session.add(reship)
    return {
        "reship_order_id": reship.id,
        "lines": reship.lines,
        "original_tracking_no": (order.shipment or {}).get("tracking_no"),
    }


async def _keep_inspection(ctx: Context, case: Case, effect: dc.KeepInspection) -> dict[str, Any]:
    """R-INSPECT: the inspections register."""
    found = effect.inspection
    marks = found.size_marks or dc.SizeMarks()
    ctx.session.add(
        InspectionEntry(
            id=new_id("insp"),
            case_id=case.id,
            order_id=case.order_id,
            shop_id=case.shop_id,
            remedy=case.remedy,
            reason=case.reason,
            passed=found.passed,
            tags_on=found.tags_on,
            worn=found.worn,
            washed=found.washed,
            hang_tag_size=marks.hang_tag,
            wash_label_size=marks.wash_label,
            neck_label_size=marks.neck_label,
            sizes_agree=found.sizes_agree,
            parcel_weight_g=found.parcel_weight_g,
            expected_weight_g=found.expected_weight_g,
            weight_difference_g=found.weight_difference_g,
            notes=found.notes,
            recorded_by=ctx.principal.name,
            recorded_at=ctx.now,
        )
    )
    return {}


EFFECTS: dict[type[Any], Any] = {
    dc.WithdrawMoney: _withdraw_money,
    dc.ReleaseUnspent: _release_unspent,
    dc.GrantMoney: _grant,
    dc.PayAsCashback: _pay_as_cashback,
    dc.KeepRetention: _keep_retention,
    dc.FollowUpCarrier: _follow_up_carrier,
    dc.ShipReship: _ship_reship,
    dc.KeepInspection: _keep_inspection,
}


async def sign_replacement(ctx: Context, row: Case, tracking_no: str, signed_at: datetime) -> bool:
    """R-EXCHANGE-7D: the replacement parcel of this exchange case was delivered; its sign-off is set
    once. False when the parcel is not the case's replacement or the sign-off was already set."""
    change = dc.sign_replacement(aggregate(row), tracking_no, signed_at)
    if change is None:
        return False
    _store(row, change.case)
    touch(ctx, row, "replacement_signed", row.status, change.data)
    await ctx.session.flush()
    return True


async def _cashback_for_case(ctx: Context, case: Case) -> CashbackTask:
    """R-PRICE-PROTECT and cashback cases are paid as cashback, verified by the approval itself; the case's
    reservation moves to the task that pays it."""
    order = await repo.get_order(ctx.session, case.order_id)
    try:
        payee = Payee(
            alipay_account=order.buyer.get("alipay_account") or "", name=order.buyer.get("name") or ""
        )
    except ValidationError:
        raise Problem(
            422,
            "payee_missing",
            "No valid Alipay account",
            "the order's buyer has no valid alipay_account and name; update the order snapshot first",
        ) from None
    task = CashbackTask(
        id=new_id("cb"),
        order_id=case.order_id,
        shop_id=case.shop_id,
        line_id=case.lines[0]["line_id"],
        case_id=case.id,
        reason="price_difference" if case.remedy == "price_protection" else "other",
        amount=case.amount or Decimal("0.00"),
        payee=payee.model_dump(),
        status="approved",
        created_by=ctx.principal.name,
        verified_by=ctx.principal.name,
        verified_at=ctx.now,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    if case.reason == "shipping_fee":
        task.reason = "shipping_fee"
    ctx.session.add(task)
    await ledger.move_to_task(ctx.session, ctx.now, case_id=case.id, cashback_task_id=task.id)
    emit_cashback(ctx, task, "approved")
    return task


async def _follow_up(ctx: Context, case: Case) -> LogisticsFollowUp:
    entry = (
        await ctx.session.exec(select(LogisticsFollowUp).where(LogisticsFollowUp.case_id == case.id))
    ).first()
    if entry is None:
        order = await repo.get_order(ctx.session, case.order_id)
        _register_carrier_problem(ctx, case, order, [])
        await ctx.session.flush()
        entry = (
            await ctx.session.exec(select(LogisticsFollowUp).where(LogisticsFollowUp.case_id == case.id))
        ).one()
    return entry
