"""Reactions to logistics-watcher's alerts and parcel milestones (logistics.alerts.v1, logistics.parcels.v1),
keyed by tracking number.

- An alert that tracking stopped (`no_first_scan`, `stalled`: R-NO-UPDATE; `suspected_lost`: R-LOST) opens a
  logistics case for the order (reason `no_tracking_update` or `lost`, remedy `reship`) unless one is open,
  reports it to the carrier at once and so enters it in the logistics follow-up register with the SLA for
  the carrier's answer (the configured working days); `escalate_overdue` escalates the answers overdue.
- `delivered` (outbound) sets the order's `signed_at` if unset: the 7-day clock starts (R-7D-WINDOW). A
  sign-off once set never moves (so never backwards), and one dated before the order was paid or shipped is
  ignored. A reship already made for the order is flagged for review: its original parcel did arrive
  (R-RESHIP).
- `delivered` of an exchange's replacement parcel (the tracking number `ship_replacement` recorded) sets that
  case's `replacement_signed_at` instead, once: the replacement's own 7-day window opens (R-EXCHANGE-7D).
- `intercepted` confirms the intercept of the order's cases in `intercepting`, so that the refund of
  R-RO-SHIPPED can proceed.

An alert or milestone of a parcel of another shop than the order's is logged and ignored: a warehouse of
one shop cannot sign for, turn back or report another shop's order. (One without a shop comes from a parcel
whose events never named one, which only the bus or a key for all shops can send.)

The time of each change is the event's time; timeline entries name the watcher as the actor.
"""

from __future__ import annotations

import logging
from datetime import datetime

from aftersales_shared import contracts
from aftersales_shared.auth import Principal, Role, system_actor
from aftersales_shared.clock import as_utc
from aftersales_shared.consumer import Handler
from aftersales_shared.events import CloudEvent, LogisticsAlert, ParcelMilestone
from aftersales_shared.problems import as_problem
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers, ledger
from .. import repository as repo
from ..domain.case import CaseDetails
from ..domain.model import InvalidRequest
from ..domain.workflow import ACTIVE, Action, CaseStatus
from ..models import Case, LogisticsFollowUp, Order, ReshipOrder
from ..schemas import CaseCreate, CaseLineIn, NotesBody
from . import system_context

log = logging.getLogger(__name__)
# Opens and reports logistics cases as support would; confirms intercepts as the warehouse would.
WATCHER = system_actor("logistics-watcher", Role.support, Role.warehouse)
SLA_MONITOR = system_actor("carrier-sla-monitor", Role.support)
CASE_REASON = {
    "no_first_scan": "no_tracking_update",
    "stalled": "no_tracking_update",
    "suspected_lost": "lost",
}
SETTLED = frozenset({CaseStatus.refunded, CaseStatus.exchanged, CaseStatus.reshipped})


def _context(session: AsyncSession, at: datetime, principal: Principal = WATCHER) -> handlers.Context:
    return system_context(session, at, principal)


async def alert_opened(session: AsyncSession, event: CloudEvent) -> None:
    alert = LogisticsAlert.model_validate(event.data)
    reason = CASE_REASON.get(alert.kind)
    if reason is None or alert.direction == "return" or alert.order_id is None:
        return
    order = await session.get(Order, alert.order_id)
    if order is None:
        log.warning(
            "logistics alert for an order we do not know",
            extra={"order_id": alert.order_id, "tracking_no": alert.tracking_no},
        )
        return
    if _of_another_shop(order, alert.shop_id, f"{alert.kind} alert", alert.tracking_no):
        return
    if any(
        c.reason in CASE_REASON.values() and c.status in ACTIVE - SETTLED
        for c in await repo.order_cases(session, order.order_id)
    ):
        return  # one logistics case per order at a time
    ctx = _context(session, event.time)
    case = await _open_case(ctx, order, reason, alert)
    if case is None:
        return
    # R-NO-UPDATE / R-LOST: the carrier is asked at once and answers within the SLA (the register entry).
    await handlers.act(
        ctx,
        case.id,
        Action.report_to_carrier,
        NotesBody(notes=f"{alert.kind} alert on {alert.carrier} {alert.tracking_no}"),
        None,
    )
    entry = (await session.exec(select(LogisticsFollowUp).where(LogisticsFollowUp.case_id == case.id))).one()
    entry.carrier, entry.tracking_no = entry.carrier or alert.carrier, entry.tracking_no or alert.tracking_no
    session.add(entry)
    await session.flush()


async def _open_case(ctx: handlers.Context, order: Order, reason: str, alert: LogisticsAlert) -> Case | None:
    """A reship case for the whole order, opened as support would (R-NO-UPDATE, R-LOST)."""
    lines = await repo.order_lines(ctx.session, order.order_id)
    body = CaseCreate(
        order_id=order.order_id,
        lines=[CaseLineIn(line_id=li.line_id, quantity=li.quantity) for li in lines],
        remedy="reship",
        reason=reason,
        description=f"logistics-watcher {alert.alert_id}: {alert.kind} ({alert.carrier} {alert.tracking_no})",
    )
    try:
        return await handlers.open_case(ctx, body)
    except Exception as error:
        if (refused := as_problem(error)) is None:
            raise
        log.warning(
            "no logistics case for a %s alert: %s",
            alert.kind,
            refused.detail,
            extra={"order_id": order.order_id, "tracking_no": alert.tracking_no},
        )
        return None


async def parcel_delivered(session: AsyncSession, event: CloudEvent) -> None:
    milestone = ParcelMilestone.model_validate(event.data)
    if milestone.direction != "outbound" or milestone.order_id is None:
        return
    order = (
        await session.exec(select(Order).where(Order.order_id == milestone.order_id).with_for_update())
    ).first()
    if order is None or _of_another_shop(order, milestone.shop_id, "sign-off", milestone.tracking_no):
        return
    if as_utc(milestone.occurred_at) < (earliest := _earliest_sign_off(order)):
        log.warning(
            "a sign-off dated %s, before the order was paid or shipped (%s): ignored",
            as_utc(milestone.occurred_at).isoformat(),
            earliest.isoformat(),
            extra={"order_id": order.order_id, "tracking_no": milestone.tracking_no},
        )
        return
    ctx = _context(session, event.time)
    if await _replacement_delivered(ctx, order, milestone):
        return
    if order.signed_at is None:  # R-7D-WINDOW starts from the sign-off; once set it never moves
        order.signed_at, order.updated_at, order.version = milestone.occurred_at, ctx.now, order.version + 1
        session.add(order)
    original = (order.shipment or {}).get("tracking_no")
    if original not in (None, milestone.tracking_no):
        return  # the reship's own parcel
    reships = await session.exec(
        select(ReshipOrder).where(
            ReshipOrder.order_id == order.order_id, col(ReshipOrder.flagged_for_review).is_(False)
        )
    )
    for reship in reships:  # R-RESHIP (ours): the original parcel arrived after all
        reship.flagged_for_review = True
        session.add(reship)
        case = await session.get(Case, reship.case_id)
        if case is not None:
            handlers.record(
                ctx,
                case,
                "reship_flagged",
                case.status,
                {
                    "reship_order_id": reship.id,
                    "tracking_no": milestone.tracking_no,
                    "delivered_at": milestone.occurred_at.isoformat(),
                },
            )
    await session.flush()


async def _replacement_delivered(ctx: handlers.Context, order: Order, milestone: ParcelMilestone) -> bool:
    """R-EXCHANGE-7D: is the parcel an exchange's replacement? Then its delivery is that replacement's
    sign-off (set once; one dated before the replacement shipped is logged and ignored)."""
    for case in await repo.order_cases(ctx.session, order.order_id):
        parcel = CaseDetails.model_validate(case.details).replacement_parcel
        if case.remedy != "exchange" or parcel is None or parcel.tracking_no != milestone.tracking_no:
            continue
        try:
            await handlers.sign_replacement(ctx, case, milestone.tracking_no, milestone.occurred_at)
        except InvalidRequest as refused:
            log.warning(
                "the replacement's sign-off %s: ignored",
                refused,
                extra={"order_id": order.order_id, "case_id": case.id, "tracking_no": milestone.tracking_no},
            )
        return True
    return False


async def parcel_intercepted(session: AsyncSession, event: CloudEvent) -> None:
    milestone = ParcelMilestone.model_validate(event.data)
    if milestone.order_id is None:
        return
    order = await session.get(Order, milestone.order_id)
    if order is None or _of_another_shop(order, milestone.shop_id, "intercept", milestone.tracking_no):
        return
    ctx = _context(session, event.time)
    for case in await repo.order_cases(session, milestone.order_id):
        if case.status == CaseStatus.intercepting:  # R-RO-SHIPPED: the parcel is on its way back
            await handlers.act(
                ctx,
                case.id,
                Action.confirm_intercept,
                NotesBody(
                    notes=f"carrier: {milestone.tracking_no} turned back "
                    f"at {milestone.occurred_at.isoformat()}"
                ),
                None,
            )


async def alert_resolved(session: AsyncSession, event: CloudEvent) -> None:
    """The parcel moved again (or its sign-off no longer looks false): a note on the order's active case
    about that alert, so support sees it before chasing the carrier."""
    alert = LogisticsAlert.model_validate(event.data)
    reasons = {"false_delivery"} if alert.kind == "suspected_false_delivery" else set(CASE_REASON.values())
    await _note_cases(session, event, alert.order_id, alert.shop_id, alert.tracking_no, reasons, alert)


async def alert_confirmed(session: AsyncSession, event: CloudEvent) -> None:
    """R-FALSE-DELIVERY: the watcher's suspicion of the sign-off now stands with the customer's report: a
    note on the order's active false-delivery case."""
    alert = LogisticsAlert.model_validate(event.data)
    await _note_cases(
        session, event, alert.order_id, alert.shop_id, alert.tracking_no, {"false_delivery"}, alert
    )


async def parcel_returned(session: AsyncSession, event: CloudEvent) -> None:
    """A parcel of the order came back to the merchant (a return, or an outbound parcel sent back): a note on
    the order's active cases, so the warehouse's receipt and inspection can follow."""
    milestone = ParcelMilestone.model_validate(event.data)
    await _note_cases(
        session, event, milestone.order_id, milestone.shop_id, milestone.tracking_no, None, milestone
    )


async def _note_cases(
    session: AsyncSession,
    event: CloudEvent,
    order_id: str | None,
    shop_id: str | None,
    tracking_no: str,
    reasons: set[str] | None,
    payload: LogisticsAlert | ParcelMilestone,
) -> None:
    """Note the event on the order's active cases (of these reasons, if given), named after its type."""
    order = None if order_id is None else await session.get(Order, order_id)
    if order is None or _of_another_shop(order, shop_id, event.type, tracking_no):
        return
    note = NOTES[event.type]
    ctx = _context(session, event.time)
    for case in await repo.order_cases(session, order.order_id):
        if case.status in ACTIVE and (reasons is None or case.reason in reasons):
            handlers.record(ctx, case, note, case.status, payload.model_dump(mode="json", exclude_none=True))
    await session.flush()


def _of_another_shop(order: Order, parcel_shop_id: str | None, what: str, tracking_no: str) -> bool:
    """Is the parcel another shop's than the order's? Then its event is not acted on (and logged)."""
    if parcel_shop_id is None or parcel_shop_id == order.shop_id:
        return False
    log.warning(
        "%s of a parcel of shop %s for an order of shop %s: ignored",
        what,
        parcel_shop_id,
        order.shop_id,
        extra={"order_id": order.order_id, "tracking_no": tracking_no, "shop_id": order.shop_id},
    )
    return True


def _earliest_sign_off(order: Order) -> datetime:
    """No parcel is signed for before its order was paid, nor before it was shipped (when the storefront
    said when)."""
    earliest = as_utc(order.paid_at)
    shipped_at = (order.shipment or {}).get("shipped_at")
    if isinstance(shipped_at, str):
        earliest = max(earliest, as_utc(datetime.fromisoformat(shipped_at)))
    return earliest


async def escalate_overdue(session: AsyncSession, now: datetime) -> int:
    """R-LOST: escalate the carrier answers overdue (run it periodically); how many were escalated.

    The orders' locks first, in id order, then the entries and their cases, as every change of a case: a
    verdict recorded meanwhile holds its order, then its case, then its entry."""
    due = (
        LogisticsFollowUp.case_id == Case.id,
        col(LogisticsFollowUp.sla_due_at) <= now,
        col(LogisticsFollowUp.escalated_at).is_(None),
        col(LogisticsFollowUp.verdict).is_(None),
        Case.status == CaseStatus.awaiting_carrier,
    )
    orders = await ledger.lock_orders(session, None, *(await session.exec(select(Case.order_id).where(*due))))
    overdue = await session.exec(
        select(LogisticsFollowUp, Case)
        .where(*due, col(Case.order_id).in_(orders))
        .order_by(col(Case.id))
        .with_for_update()
    )
    ctx = _context(session, now, SLA_MONITOR)
    escalated = 0
    for entry, case in overdue.all():
        entry.escalated_at = entry.updated_at = ctx.now
        session.add(entry)
        handlers.record(
            ctx,
            case,
            "carrier_sla_escalated",
            case.status,
            {
                "sla_due_at": as_utc(entry.sla_due_at).isoformat() if entry.sla_due_at else None,
                "carrier": entry.carrier,
                "tracking_no": entry.tracking_no,
            },
        )
        escalated += 1
    await session.flush()
    return escalated


HANDLERS: dict[str, Handler] = {
    contracts.ALERT_OPENED.type: alert_opened,
    contracts.PARCEL_DELIVERED.type: parcel_delivered,
    contracts.PARCEL_INTERCEPTED.type: parcel_intercepted,
    contracts.ALERT_RESOLVED.type: alert_resolved,
    contracts.ALERT_CONFIRMED.type: alert_confirmed,
    contracts.PARCEL_RETURNED.type: parcel_returned,
}
# The timeline note (and case event) of each event that only informs a case
NOTES = {
    contracts.ALERT_RESOLVED.type: "logistics_alert_resolved",
    contracts.ALERT_CONFIRMED.type: "false_delivery_alert_confirmed",
    contracts.PARCEL_RETURNED.type: "parcel_returned",
}
