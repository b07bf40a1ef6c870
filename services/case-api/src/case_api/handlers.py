"""What each command does: one place to read what happens when a case is opened or moved.

Handlers check, change state, write the timeline and queue events in the caller's transaction.
They flush; the edge commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersales_shared import topics
from aftersales_shared.auth import Principal, Role
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import as_utc
from aftersales_shared.db import log_on_commit
from aftersales_shared.events import CaseEvent as CaseEventData
from aftersales_shared.events import CashbackApproved, Payee
from aftersales_shared.ids import new_id
from aftersales_shared.money import cents, fmt
from aftersales_shared.outbox import add_event
from aftersales_shared.problems import Problem, conflict
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import repository as repo
from .domain import model as dm
from .domain import policy
from .domain.workflow import MOVES, RELEASED, Action, CaseStatus, after_intake
from .models import (
    Case,
    CaseEvent,
    CaseEvidence,
    CashbackTask,
    Compensation,
    Evidence,
    LogisticsFollowUp,
    Order,
    OrderLine,
    ReshipOrder,
    RetentionEntry,
)
from .schemas import ActionIn, CaseCreate, CashbackCreate, OrderIn

log = logging.getLogger(__name__)

SOURCE = "/case-api"
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
    Action.close: "closed",
}
RETURN_NOTICE = {  # R-RETURN-NOTICE
    "condition_zh": "请保持商品吊牌完好、未穿着、未洗涤,不影响二次销售。",
    "condition_en": "Please keep the tags on; the item must be unworn, unwashed and resaleable.",
    "ship_back_within_days": 7,
    "processing_days": "3-5",
    "service_wechat": "official customer-service WeChat: see the shop page",
}


@dataclass(frozen=True)
class Context:
    session: AsyncSession
    principal: Principal
    now: datetime
    calendar: BusinessCalendar
    sla_working_days: int = 2


# ---------------------------------------------------------------- orders


async def upsert_order(ctx: Context, order_id: str, body: OrderIn) -> tuple[Order, bool]:
    ctx.principal.require(Role.storefront)
    ctx.principal.require_shop(body.shop_id)
    order = await ctx.session.get(Order, order_id)
    created = order is None
    data = body.model_dump(exclude={"lines"})
    data["buyer"] = body.buyer.model_dump()
    data["shipment"] = body.shipment.model_dump(mode="json") if body.shipment else None
    data["buyer_id"] = body.buyer.id
    if order is None:
        order = Order(order_id=order_id, created_at=ctx.now, updated_at=ctx.now, **data)
        ctx.session.add(order)
    else:
        # Another shop's order: 404 as on GET, not a 409 that tells the caller it exists.
        ctx.principal.require_shop(order.shop_id, hide=True, what="order")
        if order.shop_id != body.shop_id:
            raise conflict("order_shop_mismatch", "an order cannot move to another shop")
        for key, value in data.items():
            setattr(order, key, value)
        order.version += 1
        order.updated_at = ctx.now
    await _replace_lines(ctx, order_id, body)
    await ctx.session.flush()
    return order, created


async def _replace_lines(ctx: Context, order_id: str, body: OrderIn) -> None:
    existing = {line.line_id: line for line in await repo.order_lines(ctx.session, order_id)}
    used = {line["line_id"] for case in await repo.order_cases(ctx.session, order_id) for line in case.lines}
    used |= {task.line_id for task in await repo.order_cashback_tasks(ctx.session, order_id)}
    dropped = set(existing) - {line.line_id for line in body.lines}
    if dropped & used:
        raise conflict(
            "line_in_use",
            f"lines {sorted(dropped & used)} have after-sales cases or cashback tasks and must stay",
        )
    for line_id in dropped:
        await ctx.session.delete(existing[line_id])
    for position, line in enumerate(body.lines):
        row = existing.get(line.line_id) or OrderLine(
            order_id=order_id, line_id=line.line_id, position=position, **line.model_dump(exclude={"line_id"})
        )
        for key, value in line.model_dump(exclude={"line_id"}).items():
            setattr(row, key, value)
        row.position = position
        ctx.session.add(row)


def domain_order(order: Order, lines: list[OrderLine]) -> dm.Order:
    shipment = order.shipment or {}
    shipped_at = shipment.get("shipped_at")
    if shipment and shipped_at is None:
        shipped_at = order.paid_at  # a tracking number without a time still means shipped
    return dm.Order(
        order_id=order.order_id,
        shop_id=order.shop_id,
        buyer_id=order.buyer_id,
        paid_at=as_utc(order.paid_at),
        lines=tuple(
            dm.OrderLine(
                line_id=li.line_id,
                sku=li.sku,
                quantity=li.quantity,
                unit_price=li.unit_price,
                paid_amount=li.paid_amount,
                no_reason_return=li.no_reason_return,
                category=li.category,
            )
            for li in lines
        ),
        shipping_fee=order.shipping_fee,
        shipping_insurance=order.shipping_insurance,
        shipped_at=as_utc(datetime.fromisoformat(shipped_at))
        if isinstance(shipped_at, str)
        else (as_utc(shipped_at) if shipped_at else None),
        signed_at=as_utc(order.signed_at) if order.signed_at else None,
    )


async def line_history(
    session: AsyncSession, order_id: str, *, exclude_case: str | None = None
) -> dict[str, dm.LineHistory]:
    cases = await repo.order_cases(session, order_id)
    compensated, shipping = await repo.compensation_totals(
        session, order_id, cases, exclude_case=exclude_case
    )
    exchanged: set[str] = set()
    replacement_signed: dict[str, datetime] = {}
    for case in cases:
        if case.id == exclude_case or case.remedy != "exchange" or case.status in RELEASED:
            continue
        for line in case.lines:
            exchanged.add(line["line_id"])
            if signed := case.details.get("replacement_signed_at"):
                replacement_signed[line["line_id"]] = as_utc(datetime.fromisoformat(signed))
    zero = Decimal("0.00")
    return {
        line_id: dm.LineHistory(
            line_id=line_id,
            compensated=compensated.get(line_id, zero),
            shipping_reimbursed=shipping.get(line_id, zero),
            exchanged=line_id in exchanged,
            replacement_signed_at=replacement_signed.get(line_id),
        )
        for line_id in set(compensated) | set(shipping) | exchanged
    }


async def load_domain_order(session: AsyncSession, order: Order) -> dm.Order:
    return domain_order(order, await repo.order_lines(session, order.order_id))


def refusal(exc: dm.PolicyRefusal) -> Problem:
    return Problem(
        422,
        "policy_refused",
        "Refused by the after-sales policy",
        exc.message_en,
        rule=exc.rule,
        message_zh=exc.message_zh,
        message_en=exc.message_en,
        facts=exc.facts,
    )


# ---------------------------------------------------------------- cases


async def open_case(ctx: Context, body: CaseCreate) -> Case:
    ctx.principal.require(Role.storefront, Role.support)
    order = await repo.visible_order(ctx.session, ctx.principal, body.order_id)
    evidence = await repo.evidence_by_ids(ctx.session, body.evidence_ids)
    new_order = None
    if body.new_order_id is not None:
        new_row = await repo.visible_order(ctx.session, ctx.principal, body.new_order_id)
        new_order = await load_domain_order(ctx.session, new_row)
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
    try:
        decision = policy.evaluate(
            await load_domain_order(ctx.session, order),
            request,
            await line_history(ctx.session, order.order_id),
            ctx.now,
        )
    except dm.PolicyRefusal as exc:
        raise refusal(exc) from None
    except dm.InvalidRequest as exc:
        raise Problem(
            422,
            "validation_failed",
            "Invalid request",
            exc.message,
            errors=[{"field": exc.field, "message": exc.message}],
        ) from None
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
    ctx.session.add(case)
    await ctx.session.flush()
    await _attach(ctx, case, evidence, new_case=True)
    if body.reason in CARRIER_REASONS:
        _register_carrier_problem(ctx, case, order, [e.id for e in evidence])
    record(ctx, case, "open", None, {"rules": list(decision.rules), "request": body.model_dump(mode="json")})
    return case


def _distinct(evidence: list[Evidence], kind: str) -> int:
    """R-EVIDENCE counts different files: the same id sent twice, or the same bytes uploaded twice, is one."""
    return len({e.sha256 for e in evidence if e.kind == kind})


def _intake_details(body: CaseCreate, decision: dm.Decision) -> dict[str, Any]:
    details: dict[str, Any] = {"rules": list(decision.rules)}
    if decision.deadline is not None:
        details["deadline"] = decision.deadline.isoformat()
    if body.new_order_id:
        details["new_order_id"] = body.new_order_id
    if decision.shipping_amounts:
        details["shipping_amounts"] = {k: fmt(v) for k, v in decision.shipping_amounts.items()}
    return details


async def _attach(
    ctx: Context, case: Case, evidence: list[Evidence], *, new_case: bool = False
) -> list[dict[str, Any]]:
    """Link files to the case; a file already backing another order's case is flagged."""
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
        reused = await repo.other_order_using(ctx.session, item.sha256, case.order_id)
        ctx.session.add(
            CaseEvidence(
                case_id=case.id,
                evidence_id=item.id,
                order_id=case.order_id,
                sha256=item.sha256,
                reused_from_order_id=reused,
                attached_at=ctx.now,
            )
        )
        known.add(item.id)
        attached.append({"evidence_id": item.id, "kind": item.kind, "reused_from_order_id": reused})
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
    """The timeline entry and the outbox event of one change, in the same transaction. A workflow action's
    event is named in the past tense (`approve` → `aftersales.case.approved.v1`); a note is named as is."""
    ctx.session.add(
        CaseEvent(
            id=new_id("cev"),
            case_id=case.id,
            action=action,
            actor=ctx.principal.name,
            from_status=from_status,
            to_status=case.status,
            data=data,
            at=ctx.now,
        )
    )
    past = "opened" if action == "open" else PAST.get(action, action)
    event_id = add_event(
        ctx.session,
        topic=topics.CASES,
        key=case.order_id,
        source=SOURCE,
        type=f"aftersales.case.{past}.v1",
        subject=case.id,
        at=ctx.now,
        data=CaseEventData(
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
        event_id=event_id,
        event_type=f"aftersales.case.{past}.v1",
    )


async def act(ctx: Context, case_id: str, action: Action, body: ActionIn, if_match: int | None) -> Case:
    move = MOVES[action]
    ctx.principal.require(*move.roles)
    case = await repo.get_case(ctx.session, ctx.principal, case_id, for_update=True)
    expected = body.expected_version if body.expected_version is not None else if_match
    if expected is not None and expected != case.version:
        raise conflict(
            "stale_version",
            f"the case is at version {case.version}, not {expected}",
            current_version=case.version,
        )
    if case.status not in move.sources:
        raise conflict(
            "invalid_transition",
            f"cannot {action} a case that is {case.status}: {move.hint}",
            case_status=case.status,
            allowed_from=sorted(move.sources),
        )
    from_status = case.status
    data = await STEPS[action](ctx, case, body)
    case.version += 1
    case.updated_at = ctx.now
    ctx.session.add(case)
    record(ctx, case, action, from_status, data)
    await ctx.session.flush()
    return case


def _need(value: Any, field: str, action: Action) -> Any:
    if value is None:
        raise Problem(
            422,
            "validation_failed",
            "Invalid request",
            f"{action} needs {field}",
            errors=[{"field": field, "message": "required for this action"}],
        )
    return value


async def _record_retention(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    offer = _need(body.offer, "offer", Action.record_retention)
    outcome = _need(body.outcome, "outcome", Action.record_retention)
    ctx.session.add(
        RetentionEntry(
            id=new_id("ret"),
            case_id=case.id,
            order_id=case.order_id,
            shop_id=case.shop_id,
            remedy=case.remedy,
            reason=case.reason,
            real_reason=body.real_reason,
            offer=offer,
            outcome=outcome,
            recorded_by=ctx.principal.name,
            recorded_at=ctx.now,
        )
    )
    case.status = S.retained if outcome == "accepted" else S.open  # R-RETENTION
    return {"offer": offer, "outcome": outcome, "real_reason": body.real_reason}


async def _approve(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if case.remedy in ("return_refund", "exchange") and case.stage == "received":
        case.status = S.awaiting_return
        data["return_notice"] = RETURN_NOTICE  # R-RETURN-NOTICE
        if case.remedy == "exchange":
            data["replacement"] = "may ship now"  # R-EXCHANGE-7D
    elif case.remedy in ("price_protection", "cashback"):
        case.status = S.approved
        task = await _cashback_for_case(ctx, case)
        data["cashback_task_id"] = task.id
    else:
        case.status = S.approved
        if case.remedy in ("refund_only", "return_refund") and case.stage == "unshipped":
            data["cancel_shipment"] = True  # R-RO-UNSHIPPED: the warehouse cancels the shipment
    return data


async def _cashback_for_case(ctx: Context, case: Case) -> CashbackTask:
    """R-PRICE-PROTECT and cashback cases are paid as cashback, verified by the approval itself."""
    order = await repo.get_order(ctx.session, case.order_id)
    account = order.buyer.get("alipay_account")
    if not account:
        raise Problem(
            422,
            "payee_missing",
            "No Alipay account",
            "the order's buyer has no alipay_account; update the order snapshot first",
        )
    line_id = case.lines[0]["line_id"]
    task = CashbackTask(
        id=new_id("cb"),
        order_id=case.order_id,
        shop_id=case.shop_id,
        line_id=line_id,
        case_id=case.id,
        reason="price_difference" if case.remedy == "price_protection" else "other",
        amount=case.amount or Decimal("0.00"),
        payee={"alipay_account": account, "name": order.buyer["name"]},
        status="approved",
        created_by=ctx.principal.name,
        verified_by=ctx.principal.name,
        verified_at=ctx.now,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(task)
    kind = "price_protection" if case.remedy == "price_protection" else "cashback"
    _grant(ctx, case, kind, cashback_task_id=task.id)
    _emit_cashback_approved(ctx, task)
    return task


def _grant(
    ctx: Context, case: Case, kind: str, *, total: Decimal | None = None, cashback_task_id: str | None = None
) -> None:
    """Book what the case granted per line (R-COMP-CAP; shipping reimbursements apart), scaled when
    less than the case amount."""
    shipping = {k: Decimal(v) for k, v in case.details.get("shipping_amounts", {}).items()}
    amounts = {k: Decimal(v) for k, v in case.line_amounts.items()} or shipping
    if amounts is shipping:
        kind = "shipping_fee"
    whole = sum(amounts.values(), Decimal("0.00"))
    if total is not None and whole > 0 and total != whole:
        scaled = {k: cents(v * total / whole) for k, v in amounts.items()}
        last = next(reversed(scaled))
        scaled[last] += total - sum(scaled.values(), Decimal("0.00"))
        amounts = scaled
    for line_id, amount in amounts.items():
        ctx.session.add(
            Compensation(
                id=new_id("cmp"),
                order_id=case.order_id,
                line_id=line_id,
                kind=kind,
                amount=amount,
                case_id=case.id,
                cashback_task_id=cashback_task_id,
                created_at=ctx.now,
            )
        )


async def _reject(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    case.status = S.rejected
    return {"reason_code": _need(body.reason_code, "reason_code", Action.reject), "message": body.message}


async def _withdraw(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    case.status = S.withdrawn
    return {"message": body.message} if body.message else {}


async def _attach_evidence(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    ids = _need(body.evidence_ids, "evidence_ids", Action.attach_evidence)
    attached = await _attach(ctx, case, await repo.evidence_by_ids(ctx.session, ids))
    files = [e for _, e in await repo.case_evidence(ctx.session, case.id)]
    images, videos = _distinct(files, "image"), _distinct(files, "video")
    case.evidence_missing = policy.missing_evidence(dm.Reason(case.reason), images, videos)
    if case.status == S.awaiting_evidence:
        case.status = after_intake(case.evidence_missing, case.needs_retention)  # R-EVIDENCE
    return {"attached": attached, "evidence_missing": case.evidence_missing}


async def _submit_return_tracking(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    parcel = {
        "carrier": _need(body.carrier, "carrier", Action.submit_return_tracking),
        "tracking_no": _need(body.tracking_no, "tracking_no", Action.submit_return_tracking),
        "submitted_at": ctx.now.isoformat(),
    }
    case.details = {**case.details, "return_parcel": parcel}
    return parcel


async def _record_receipt(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    case.status = S.return_received
    case.details = {**case.details, "received_at": ctx.now.isoformat()}
    return {"notes": body.notes} if body.notes else {}


async def _record_inspection(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    passed = _need(body.passed, "passed", Action.record_inspection)
    inspection = {"passed": passed, "notes": body.notes, "at": ctx.now.isoformat()}
    case.details = {**case.details, "inspection": inspection}
    if not passed:
        case.status = S.open  # R-RESALEABLE: the refund stops; support decides with the notes
    elif case.remedy == "exchange":
        case.status = S.exchanged
    return inspection


async def _refund(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    if case.amount is None:
        raise conflict("nothing_to_refund", f"a {case.remedy} case has no refund amount")
    if case.status == S.return_received and not (case.details.get("inspection") or {}).get("passed"):
        raise conflict("inspection_pending", "the returned goods must pass inspection before the refund")
    if case.status == S.approved and case.stage == "shipped" and not case.details.get("intercepted_at"):
        # R-RO-SHIPPED: refund when the intercept succeeds, not before
        raise conflict(
            "intercept_pending", "refund once the carrier confirms the intercept", rule="R-RO-SHIPPED"
        )
    if case.remedy not in ("refund_only", "return_refund"):
        raise conflict("not_a_refund", f"a {case.remedy} case is not settled by a refund")
    amount = body.amount if body.amount is not None else case.amount
    if amount <= 0 or amount > case.amount:  # R-REFUND-VERIFY, R-COMP-CAP
        raise Problem(
            422,
            "policy_refused",
            "Refund over the approved amount",
            f"the refund must be between 0.01 and {fmt(case.amount)}",
            rule="R-COMP-CAP",
            message_zh=f"退款金额需在 0.01 至 {fmt(case.amount)} 元之间。",
            message_en=f"The refund must be between 0.01 and {fmt(case.amount)} CNY.",
            facts={"remaining_allowance": fmt(case.amount), "requested": fmt(amount)},
        )
    _grant(ctx, case, "refund", total=amount)
    case.status = S.refunded
    case.details = {**case.details, "refunded_amount": fmt(amount), "refunded_at": ctx.now.isoformat()}
    return {"amount": fmt(amount)}


async def _request_intercept(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    if case.stage != "shipped":
        raise conflict("nothing_to_intercept", "only a shipped, unreceived parcel can be intercepted")
    case.status = S.intercepting  # R-RO-SHIPPED: the customer is told to refuse the parcel
    return {"note": body.notes} if body.notes else {}


async def _confirm_intercept(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    case.status = S.approved
    case.details = {**case.details, "intercepted_at": ctx.now.isoformat()}
    return {"notes": body.notes} if body.notes else {}


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


async def _report_to_carrier(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    entry = await _follow_up(ctx, case)
    entry.reported_at = ctx.now
    entry.sla_due_at = ctx.calendar.add_working_days(ctx.now, ctx.sla_working_days)  # R-LOST
    entry.updated_at = ctx.now
    ctx.session.add(entry)
    case.details = {**case.details, "status_before_carrier": case.status}
    case.status = S.awaiting_carrier
    return {"sla_due_at": entry.sla_due_at.isoformat(), "notes": body.notes}


async def _record_carrier_verdict(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    confirmed = _need(body.confirmed, "confirmed", Action.record_carrier_verdict)
    entry = await _follow_up(ctx, case)
    entry.verdict = body.verdict or ("confirmed" if confirmed else "not confirmed")
    entry.outcome = "carrier confirmed" if confirmed else "carrier did not confirm"
    entry.updated_at = ctx.now
    ctx.session.add(entry)
    back = case.details.get("status_before_carrier", S.open)
    case.status = S.approved if back == S.approved else S.open
    case.details = {**case.details, "carrier_confirmed": confirmed}
    return {"confirmed": confirmed, "verdict": entry.verdict}


async def _create_reship(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    if case.remedy != "reship":
        raise conflict("not_a_reship", f"a {case.remedy} case is not settled by a reship")
    order = await repo.get_order(ctx.session, case.order_id)
    lines = {li.line_id: li for li in await repo.order_lines(ctx.session, case.order_id)}
    wanted = [li.model_dump() for li in body.reship_lines] if body.reship_lines else case.lines
    case_qty = {li["line_id"]: li["quantity"] for li in case.lines}
    for li in wanted:
        if li["line_id"] not in case_qty or li["quantity"] > case_qty[li["line_id"]]:
            raise Problem(
                422,
                "validation_failed",
                "Invalid reship lines",
                "reship lines must be lines of the case, at most their quantity",
                errors=[{"field": "reship_lines", "message": "not a case line, or too many"}],
            )
    reship = ReshipOrder(
        id=new_id("rs"),
        case_id=case.id,
        order_id=case.order_id,
        shop_id=case.shop_id,
        lines=[
            {
                **li,
                "sku": lines[li["line_id"]].sku,
                "name": lines[li["line_id"]].name,
                "size": lines[li["line_id"]].size,
                "color": lines[li["line_id"]].color,
            }
            for li in wanted
        ],
        # a reship case has no amount: its value is the goods' value the case books per line (R-COMP-CAP)
        value=sum((Decimal(v) for v in case.line_amounts.values()), Decimal("0.00")),
        note=body.notes or f"reship for {case.reason} ({case.id})",
        created_at=ctx.now,
    )
    ctx.session.add(reship)
    _grant(ctx, case, "reship")  # R-RESHIP value counts against R-COMP-CAP
    case.status = S.reshipped
    case.details = {**case.details, "reship_order_id": reship.id}
    shipment = order.shipment or {}
    return {
        "reship_order_id": reship.id,
        "lines": reship.lines,
        "original_tracking_no": shipment.get("tracking_no"),
    }


async def _close(ctx: Context, case: Case, body: ActionIn) -> dict[str, Any]:
    case.status = S.closed
    return {"notes": body.notes} if body.notes else {}


STEPS = {
    Action.record_retention: _record_retention,
    Action.approve: _approve,
    Action.reject: _reject,
    Action.withdraw: _withdraw,
    Action.attach_evidence: _attach_evidence,
    Action.submit_return_tracking: _submit_return_tracking,
    Action.record_receipt: _record_receipt,
    Action.record_inspection: _record_inspection,
    Action.refund: _refund,
    Action.request_intercept: _request_intercept,
    Action.confirm_intercept: _confirm_intercept,
    Action.report_to_carrier: _report_to_carrier,
    Action.record_carrier_verdict: _record_carrier_verdict,
    Action.create_reship: _create_reship,
    Action.close: _close,
}


# ---------------------------------------------------------------- cashback


async def create_cashback(ctx: Context, body: CashbackCreate) -> CashbackTask:
    ctx.principal.require(Role.support, Role.storefront)
    order = await repo.visible_order(ctx.session, ctx.principal, body.order_id)
    domain = await load_domain_order(ctx.session, order)
    if body.line_id not in {li.line_id for li in domain.lines}:
        raise Problem(
            422,
            "validation_failed",
            "Unknown line",
            f"order {order.order_id} has no line {body.line_id}",
            errors=[{"field": "line_id", "message": "not a line of the order"}],
        )
    if body.case_id is not None:
        case = await repo.get_case(ctx.session, ctx.principal, body.case_id)
        if case.order_id != order.order_id:
            raise Problem(
                422,
                "validation_failed",
                "Case of another order",
                "the case belongs to another order",
                errors=[{"field": "case_id", "message": "a case of another order"}],
            )
    if body.reason != "shipping_fee":  # shipping reimbursements are outside R-COMP-CAP
        remaining = policy.remaining_allowance(
            domain, body.line_id, await line_history(ctx.session, order.order_id)
        )
        if body.amount > remaining:
            raise Problem(
                422,
                "policy_refused",
                "Over the compensation cap",
                f"at most {fmt(remaining)} can still be granted on line {body.line_id}",
                rule="R-COMP-CAP",
                message_zh=f"该商品可补偿的剩余额度为 {fmt(remaining)} 元,本次申请超出额度,敬请谅解。",
                message_en=f"The remaining allowance for this item is {fmt(remaining)} CNY; "
                "the amount asked is above it.",
                facts={
                    "line_id": body.line_id,
                    "remaining_allowance": fmt(remaining),
                    "requested": fmt(body.amount),
                },
            )
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
        created_by=ctx.principal.name,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(task)
    await ctx.session.flush()
    return task


async def decide_cashback(
    ctx: Context, task_id: str, approve: bool, expected_version: int | None, reason: str | None
) -> CashbackTask:
    ctx.principal.require(Role.support)  # R-CASHBACK: the support group verifies
    task = (
        await ctx.session.exec(select(CashbackTask).where(CashbackTask.id == task_id).with_for_update())
    ).first()
    if task is None:
        raise Problem(404, "not_found", "cashback task not found")
    ctx.principal.require_shop(task.shop_id, hide=True, what="cashback task")
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
    if approve:
        task.status = "approved"
        kind = "shipping_fee" if task.reason == "shipping_fee" else "cashback"
        ctx.session.add(
            Compensation(
                id=new_id("cmp"),
                order_id=task.order_id,
                line_id=task.line_id,
                kind=kind,
                amount=task.amount,
                case_id=None,
                cashback_task_id=task.id,
                created_at=ctx.now,
            )
        )
        _emit_cashback_approved(ctx, task)
    else:
        task.status = "rejected"
        task.rejection_reason = reason or "rejected by support"
    ctx.session.add(task)
    await ctx.session.flush()
    return task


def _emit_cashback_approved(ctx: Context, task: CashbackTask) -> None:
    add_event(
        ctx.session,
        topic=topics.CASHBACK,
        key=task.id,
        source=SOURCE,
        type="aftersales.cashback.approved.v1",
        subject=task.id,
        at=ctx.now,
        data=CashbackApproved(
            cashback_task_id=task.id,
            order_id=task.order_id,
            shop_id=task.shop_id,
            case_id=task.case_id,
            reason=task.reason,
            amount=task.amount,
            payee=Payee(**task.payee),
            approved_at=ctx.now,
        ),
    )
