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
from aftersales_shared.events import CashbackApproved, CashbackCancelled, Payee
from aftersales_shared.ids import new_id
from aftersales_shared.money import fmt
from aftersales_shared.outbox import add_event
from aftersales_shared.problems import Problem, conflict
from pydantic import ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import ledger
from . import repository as repo
from .domain import ledger as dl
from .domain import model as dm
from .domain import policy
from .domain.workflow import MOVES, Action, CaseStatus, after_intake
from .models import (
    Case,
    CaseEvent,
    CaseEvidence,
    CashbackTask,
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
    order = await ctx.session.get(Order, order_id, with_for_update=True)  # grants read its lines
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


async def load_domain_order(session: AsyncSession, order: Order) -> dm.Order:
    return domain_order(order, await repo.order_lines(session, order.order_id))


# ---------------------------------------------------------------- cases


async def open_case(ctx: Context, body: CaseCreate) -> Case:
    """Decide the request and reserve its money under the order's lock (and the new order's, for price
    protection): R-COMP-CAP, R-POSTAGE and R-PRICE-PROTECT-ONCE hold however many arrive at once."""
    ctx.principal.require(Role.storefront, Role.support)
    named = [body.order_id] + ([body.new_order_id] if body.new_order_id is not None else [])
    orders = await ledger.lock_orders(ctx.session, ctx.principal, *named)
    order = orders[body.order_id]
    evidence = await repo.evidence_by_ids(ctx.session, body.evidence_ids)
    new_order = None
    if body.new_order_id is not None:
        new_order = await load_domain_order(ctx.session, orders[body.new_order_id])
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
    domain = await load_domain_order(ctx.session, order)
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
    ctx.session.add(case)
    _reserve_case(ctx, case, decision, claims)
    await ctx.session.flush()
    await _attach(ctx, case, evidence, new_case=True)
    if body.reason in CARRIER_REASONS:
        _register_carrier_problem(ctx, case, order, [e.id for e in evidence])
    record(ctx, case, "open", None, {"rules": list(decision.rules), "request": body.model_dump(mode="json")})
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


def _reserve_case(
    ctx: Context, case: Case, decision: dm.Decision, claims: dict[str, tuple[str, str]]
) -> None:
    """R-COMP-CAP / R-POSTAGE: the case's money (or reshipped goods' value) is reserved as it opens."""
    kind = KIND_BY_REMEDY.get(case.remedy, "refund")
    for amounts, bucket, entry_kind in (
        (decision.line_amounts, dl.Bucket.GOODS, kind),
        (decision.shipping_amounts, dl.Bucket.POSTAGE, "shipping_fee"),
    ):
        ledger.reserve(
            ctx.session,
            order_id=case.order_id,
            amounts=amounts,
            bucket=bucket,
            kind=entry_kind,
            now=ctx.now,
            case_id=case.id,
            claims=claims,
        )


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
    case = await locked_case(ctx, case_id)
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
    if case.status in WITHDRAWN:
        data |= await _withdraw_money(ctx, case)
    elif case.status == S.closed:
        await ledger.release(ctx.session, ctx.now, case_id=case.id)  # what the case never granted
    touch(ctx, case, action, from_status, data)
    await ctx.session.flush()
    return case


async def locked_case(ctx: Context, case_id: str) -> Case:
    """The case, read under its order's lock first and then its own: every action of a case can change what
    the order may still receive, and the order lock always comes first (no deadlock with a new case)."""
    case = await repo.get_case(ctx.session, ctx.principal, case_id)
    await ledger.lock_orders(ctx.session, None, case.order_id)
    return await repo.get_case(ctx.session, ctx.principal, case_id, for_update=True)


def touch(ctx: Context, case: Case, action: str, from_status: str | None, data: dict[str, Any]) -> None:
    """A change of the case: its version, and its timeline entry and event."""
    case.version += 1
    case.updated_at = ctx.now
    ctx.session.add(case)
    record(ctx, case, action, from_status, data)


# The grant is withdrawn: its reservation is released and its pending cashback cancelled (R-COMP-CAP).
WITHDRAWN = frozenset({S.rejected, S.withdrawn, S.retained})


async def _withdraw_money(ctx: Context, case: Case) -> dict[str, Any]:
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
    _require_carrier_confirmed(case)
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


def _require_carrier_confirmed(case: Case) -> None:
    """R-LOST: no reship (nor any settlement) of a lost parcel before the carrier confirms the loss."""
    if case.reason == "lost" and not case.details.get("carrier_confirmed"):
        raise dm.PolicyRefusal(
            dm.Rule.LOST,
            "您好，我们已请快递公司核实包裹丢失情况，快递公司确认丢件后会第一时间为您补发，请耐心等待。",
            "We have asked the carrier to confirm the parcel is lost; we will reship as soon as they "
            "confirm it. Thank you for your patience.",
            {"case_id": case.id, "carrier_confirmed": "false"},
        )


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
    _emit_cashback(ctx, task, "approved")
    return task


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
    if case.remedy not in ("refund_only", "return_refund"):
        raise conflict("not_a_refund", f"a {case.remedy} case is not settled by a refund")
    if case.status == S.return_received and not (case.details.get("inspection") or {}).get("passed"):
        raise dm.PolicyRefusal(  # R-RESALEABLE: the refund waits for the warehouse's inspection
            dm.Rule.RESALEABLE,
            "您好，退回的商品正在等待仓库验收，验收通过后会第一时间为您退款，请耐心等待。",
            "Your return is waiting for the warehouse's inspection; we will refund as soon as it passes. "
            "Thank you for your patience.",
            {"case_id": case.id, "inspection": "pending"},
        )
    if case.status == S.approved and case.stage == "shipped" and not case.details.get("intercepted_at"):
        raise dm.PolicyRefusal(  # R-RO-SHIPPED: refund when the intercept succeeds, not before
            dm.Rule.RO_SHIPPED,
            "您好，包裹正在拦截中，请您拒收包裹；快递确认拦截成功、包裹退回后我们会立即为您退款。",
            "Your parcel is being intercepted; please refuse it at the door. We will refund as soon as the "
            "carrier confirms the intercept and the parcel is on its way back.",
            {"case_id": case.id, "intercept": "not confirmed"},
        )
    amount = body.amount if body.amount is not None else case.amount
    if amount <= 0 or amount > case.amount:  # R-REFUND-VERIFY, R-COMP-CAP: at most what the case reserved
        raise dm.PolicyRefusal(
            dm.Rule.COMP_CAP,
            f"退款金额需在 0.01 至 {fmt(case.amount)} 元之间，请调整后再提交。",
            f"The refund must be between 0.01 and {fmt(case.amount)} CNY. Please adjust it and try again.",
            {"remaining_allowance": fmt(case.amount), "requested": fmt(amount)},
        )
    await ledger.grant(ctx.session, ctx.now, case_id=case.id, total=amount)
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
    _require_carrier_confirmed(case)
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
    await ledger.grant(ctx.session, ctx.now, case_id=case.id)  # R-RESHIP: its value was reserved at intake
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


LIVE_TASK = ("pending_verification", "approved")  # not yet paid, and still meant to be


async def create_cashback(ctx: Context, body: CashbackCreate) -> CashbackTask:
    """A task reserves its amount as it is created, under the order's lock: against the line (R-COMP-CAP),
    or, for postage, against the order's shipping fee (R-POSTAGE); approval then needs no re-check."""
    ctx.principal.require(Role.support, Role.storefront)
    if body.postage_receipt is not None:
        ctx.principal.require(Role.support)  # support saw the receipt
    order = (await ledger.lock_orders(ctx.session, ctx.principal, body.order_id))[body.order_id]
    domain = await load_domain_order(ctx.session, order)
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
    ledger.reserve(
        ctx.session,
        order_id=order.order_id,
        amounts={body.line_id: body.amount},
        bucket=dl.Bucket.POSTAGE if postage else dl.Bucket.GOODS,
        kind="shipping_fee" if postage else "cashback",
        now=ctx.now,
        cashback_task_id=task.id,
    )
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
    if case.status in WITHDRAWN or case.status == S.closed:
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
        _emit_cashback(ctx, task, "approved")
    else:
        task.status = "rejected"
        task.rejection_reason = reason or "rejected by support"
        await ledger.release(ctx.session, ctx.now, cashback_task_id=task.id)
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
        _emit_cashback(ctx, task, "cancelled", reason=reason)


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


def _emit_cashback(ctx: Context, task: CashbackTask, what: str, reason: str = "") -> None:
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
    add_event(
        ctx.session,
        topic=topics.CASHBACK,
        key=task.id,
        source=SOURCE,
        type=f"aftersales.cashback.{what}.v1",
        subject=task.id,
        at=ctx.now,
        data=data,
    )
