"""Carrier claims (R-CARRIER-CLAIM) and the report a carrier's claims desk needs (R-CARRIER-REPORT).

A claim belongs to a logistics follow-up entry (one each): booked by support or ops, then accepted, paid
or refused as the carrier answers. Each step is a note on the case's timeline. Queries live here too: the
claims, their totals per carrier and month, and the carrier report with the recipient's details.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersales_shared.auth import Principal, Role
from aftersales_shared.clock import SHANGHAI, as_utc
from aftersales_shared.ids import new_id
from aftersales_shared.money import fmt
from aftersales_shared.problems import conflict
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from . import handlers, repository
from .domain import claims as dcl
from .domain.claims import ClaimAction, ClaimStatus
from .domain.model import PolicyRefusal
from .models import (
    CarrierClaim,
    Case,
    CaseEvent,
    CaseEvidence,
    Evidence,
    LogisticsFollowUp,
    Order,
    ReshipOrder,
)

ZERO = Decimal("0.00")


async def book(
    ctx: handlers.Context,
    case_id: str,
    goods_amount: Decimal | None,
    postage_amount: Decimal,
    note: str | None,
) -> CarrierClaim:
    """Book what the carrier owes for the case's carrier problem: by default the reshipped goods' value (or,
    without a reship, the value of the case's goods, a lost parcel's) plus the postage given."""
    ctx.principal.require(Role.support, Role.ops)
    case = await handlers.locked_case(ctx, case_id)
    entry = (
        await ctx.session.exec(select(LogisticsFollowUp).where(LogisticsFollowUp.case_id == case.id))
    ).first()
    if entry is None:
        raise PolicyRefusal(
            dcl.CARRIER_CLAIM,
            "该售后不是快递问题，没有登记在物流跟进表中，不能向快递索赔。",
            "This case is not a carrier problem in the logistics follow-up register, so nothing can be "
            "claimed from a carrier.",
            {"case_id": case.id, "reason": case.reason},
        )
    carrier = dcl.claimable(entry.carrier)
    existing = (
        await ctx.session.exec(select(CarrierClaim).where(CarrierClaim.follow_up_id == entry.id))
    ).first()
    if existing is not None:
        raise conflict(
            "claim_exists", f"the case's carrier claim is {existing.id}", carrier_claim_id=existing.id
        )
    if goods_amount is None:
        goods_amount = await _goods_value(ctx.session, case.id, case.line_amounts)
    claim = CarrierClaim(
        id=new_id("ccl"),
        follow_up_id=entry.id,
        case_id=case.id,
        order_id=case.order_id,
        shop_id=case.shop_id,
        carrier=carrier,
        tracking_no=entry.tracking_no,
        status=ClaimStatus.claimed,
        goods_amount=goods_amount,
        postage_amount=postage_amount,
        claimed_amount=dcl.claimed_amount(goods_amount, postage_amount),
        note=note,
        claimed_by=ctx.principal.name,
        claimed_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(claim)
    _note(ctx, case, "carrier_claim_booked", claim)
    await ctx.session.flush()
    return claim


async def decide(
    ctx: handlers.Context,
    claim_id: str,
    action: ClaimAction,
    *,
    amount: Decimal | None = None,
    reason: str | None = None,
    paid_at: datetime | None = None,
    expected_version: int | None = None,
) -> CarrierClaim:
    """Record the carrier's answer: it accepts an amount, pays it, or refuses the claim."""
    ctx.principal.require(Role.support, Role.ops)
    claim = await get(ctx.session, ctx.principal, claim_id)
    case = await handlers.locked_case(ctx, claim.case_id)  # the order's lock, then the case's, as every move
    claim = await get(ctx.session, ctx.principal, claim_id, for_update=True)
    if expected_version is not None and expected_version != claim.version:
        raise conflict(
            "stale_version",
            f"the claim is at version {claim.version}, not {expected_version}",
            current_version=claim.version,
        )
    to = dcl.move(ClaimStatus(claim.status), action)
    if action is ClaimAction.accept:
        claim.accepted_amount = dcl.check_amount(action, amount or ZERO, claim.claimed_amount)
        claim.decided_at = ctx.now
    elif action is ClaimAction.pay:
        claim.paid_amount = dcl.check_amount(action, amount or ZERO, claim.accepted_amount or ZERO)
        claim.paid_at = paid_at or ctx.now
    else:
        claim.refusal_reason, claim.decided_at = reason, ctx.now
    claim.status, claim.version, claim.updated_at = to, claim.version + 1, ctx.now
    ctx.session.add(claim)
    _note(ctx, case, f"carrier_claim_{to}", claim)
    await ctx.session.flush()
    return claim


async def get(
    session: AsyncSession, principal: Principal, claim_id: str, *, for_update: bool = False
) -> CarrierClaim:
    return await repository.visible(
        session, principal, CarrierClaim, claim_id, "carrier claim", for_update=for_update
    )


def amount_now(claim: CarrierClaim) -> Decimal:
    """The amount at the claim's status: claimed, then what the carrier accepted, then what it paid."""
    if claim.status == ClaimStatus.paid and claim.paid_amount is not None:
        return claim.paid_amount
    if claim.status == ClaimStatus.accepted and claim.accepted_amount is not None:
        return claim.accepted_amount
    return claim.claimed_amount


def summary(claim: CarrierClaim | None) -> dict[str, str] | None:
    """`carrier_claim` {status, amount} of a register row."""
    return None if claim is None else {"status": claim.status, "amount": fmt(amount_now(claim))}


async def of_follow_ups(session: AsyncSession, follow_up_ids: Iterable[str]) -> dict[str, CarrierClaim]:
    ids = list(follow_up_ids)
    if not ids:
        return {}
    rows = await session.exec(select(CarrierClaim).where(col(CarrierClaim.follow_up_id).in_(ids)))
    return {c.follow_up_id: c for c in rows.all()}


async def listed(
    session: AsyncSession,
    principal: Principal,
    *,
    carrier: str | None = None,
    status: ClaimStatus | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[CarrierClaim]:
    """The claims the key may see, newest first."""
    filters = [col(CarrierClaim.carrier) == carrier] if carrier is not None else []
    if status is not None:
        filters.append(col(CarrierClaim.status) == status)
    return await repository.newest(
        session, CarrierClaim, principal, CarrierClaim.claimed_at, filters, since, limit
    )


def month_of(at: datetime) -> str:
    """The Asia/Shanghai month a claim was booked in (YYYY-MM)."""
    return as_utc(at).astimezone(SHANGHAI).strftime("%Y-%m")


def totals(claims: Sequence[CarrierClaim]) -> list[dict[str, Any]]:
    """Per carrier and month (of booking, Beijing time): how many claims, and the amounts claimed, accepted,
    paid, refused, and still owed (accepted, not paid yet)."""
    groups: dict[tuple[str, str], list[CarrierClaim]] = defaultdict(list)
    for claim in claims:
        groups[(claim.carrier, month_of(claim.claimed_at))].append(claim)
    rows = []
    for (carrier, month), group in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0]), reverse=True):

        def total(amounts: Iterable[Decimal | None]) -> str:
            return fmt(sum((a for a in amounts if a is not None), ZERO))

        rows.append(
            {
                "carrier": carrier,
                "month": month,
                "claims": len(group),
                "claimed": total(c.claimed_amount for c in group),
                "accepted": total(c.accepted_amount for c in group if c.status != ClaimStatus.refused),
                "paid": total(c.paid_amount for c in group),
                "refused": total(c.claimed_amount for c in group if c.status == ClaimStatus.refused),
                "outstanding": total(c.accepted_amount for c in group if c.status == ClaimStatus.accepted),
            }
        )
    return rows


async def report(
    session: AsyncSession, principal: Principal, carrier: str, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """R-CARRIER-REPORT 报快递: per problem parcel of the carrier, what its claims desk needs: the tracking
    number, the order, the problem, the photos, the claim, and the recipient's name, address and phone,
    which only support sees (ops gets the rows without them)."""
    entries = await repository.newest(
        session,
        LogisticsFollowUp,
        principal,
        LogisticsFollowUp.created_at,
        [col(LogisticsFollowUp.carrier) == carrier],
        since,
        limit,
    )
    claims = await of_follow_ups(session, (e.id for e in entries))
    photos = await _photos(session, [e.case_id for e in entries])
    recipients = await _recipients(session, {e.order_id for e in entries})
    support = principal.has_any([Role.support])
    rows = []
    for entry in entries:
        claim = claims.get(entry.id)
        recipient = recipients.get(entry.order_id, {}) if support else {}
        rows.append(
            {
                "carrier": entry.carrier,
                "tracking_no": entry.tracking_no,
                "order_id": entry.order_id,
                "case_id": entry.case_id,
                "shop_id": entry.shop_id,
                "problem": entry.problem,
                "registered_at": entry.created_at.isoformat(),
                "reported_at": entry.reported_at.isoformat() if entry.reported_at else None,
                "verdict": entry.verdict,
                "photos": photos.get(entry.case_id, []),
                "recipient_name": recipient.get("name"),
                "recipient_phone": recipient.get("phone"),
                "recipient_address": recipient.get("address"),
                "carrier_claim_id": claim.id if claim else None,
                "carrier_claim": summary(claim),
                "goods_amount": fmt(claim.goods_amount) if claim else None,
                "postage_amount": fmt(claim.postage_amount) if claim else None,
                "claimed_amount": fmt(claim.claimed_amount) if claim else None,
            }
        )
    return rows


async def _goods_value(session: AsyncSession, case_id: str, line_amounts: dict[str, str]) -> Decimal:
    reships = (await session.exec(select(ReshipOrder).where(ReshipOrder.case_id == case_id))).all()
    if reships:
        return sum((r.value for r in reships), ZERO)
    return sum((Decimal(v) for v in line_amounts.values()), ZERO)


async def _photos(session: AsyncSession, case_ids: list[str]) -> dict[str, list[str]]:
    """Each case's evidence, as `id (sha256)`: the files the carrier is sent."""
    if not case_ids:
        return {}
    rows = await session.exec(
        select(CaseEvidence.case_id, Evidence.id, Evidence.sha256)
        .join(Evidence, col(Evidence.id) == col(CaseEvidence.evidence_id))
        .where(col(CaseEvidence.case_id).in_(case_ids))
        .order_by(col(CaseEvidence.attached_at), col(Evidence.id))
    )
    found: dict[str, list[str]] = defaultdict(list)
    for case_id, evidence_id, sha256 in rows.all():
        found[case_id].append(f"{evidence_id} ({sha256[:12]})")
    return found


async def _recipients(session: AsyncSession, order_ids: set[str]) -> dict[str, dict[str, Any]]:
    if not order_ids:
        return {}
    rows = await session.exec(select(Order).where(col(Order.order_id).in_(sorted(order_ids))))
    return {o.order_id: o.buyer for o in rows.all()}


def _note(ctx: handlers.Context, case: Case, action: str, claim: CarrierClaim) -> None:
    """A note on the case's timeline. Not an event: what the shop claims from its carrier is not the
    storefront's or the buyer's business."""
    ctx.session.add(
        CaseEvent(
            id=new_id("cev"),
            case_id=case.id,
            action=action,
            actor=ctx.principal.name,
            from_status=case.status,
            to_status=case.status,
            data=_facts(claim),
            at=ctx.now,
        )
    )


def _facts(claim: CarrierClaim) -> dict[str, Any]:
    """What a timeline note of the claim carries."""
    amounts = {
        "claimed_amount": claim.claimed_amount,
        "accepted_amount": claim.accepted_amount,
        "paid_amount": claim.paid_amount,
    }
    return {
        "carrier_claim_id": claim.id,
        "carrier": claim.carrier,
        "status": claim.status,
        **{k: fmt(v) for k, v in amounts.items() if v is not None},
        **({"refusal_reason": claim.refusal_reason} if claim.refusal_reason else {}),
    }
