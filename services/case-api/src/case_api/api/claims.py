"""Carrier claims 快递索赔 (R-CARRIER-CLAIM) and the carrier report 报快递 (R-CARRIER-REPORT), for support and
ops: book a case's claim, record the carrier's answer, and the registers: the claims, their totals per
carrier and month, and the report a carrier's claims desk needs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from aftersales_shared.auth import Role
from aftersales_shared.clock import as_utc
from aftersales_shared.export import FORMATS_DOC, Column, Format, register_response
from aftersales_shared.fields import Instant, NulFree, ResourceIdPath
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.money import Money, MoneyOut
from aftersales_shared.web import IdempotencyKey
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .. import claims
from ..domain.claims import ClaimAction, ClaimStatus
from ..models import CarrierClaim
from .deps import ContextDep, IfMatchDep

router = APIRouter(prefix="/v1", tags=["carrier claims"])
Utc = Annotated[datetime, AfterValidator(as_utc)]
NonNegative = Annotated[Money, Field(ge=0)]
Positive = Annotated[Money, Field(gt=0)]
CarrierQ = Annotated[
    str, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$", description="the carrier")
]
Since = Annotated[Instant | None, Query(description="entries from this time on")]
Limit = Annotated[int, Query(ge=1, le=10_000)]
FormatQ = Annotated[Format, Query(alias="format")]


class Strict(NulFree):
    model_config = ConfigDict(extra="forbid")


class ClaimCreate(Strict):
    """Book what the carrier owes. 登记快递应承担的费用。"""

    goods_amount: NonNegative | None = Field(
        None,
        description="the goods: by default the reshipped goods' value, or without a reship the case's goods "
        "(a lost parcel's value) / 货值,默认为补发货值",
    )
    postage_amount: NonNegative = Field(
        Decimal("0.00"), description="the reship's or return's postage / 运费"
    )
    note: str | None = Field(None, max_length=500)


class ClaimDecision(Strict):
    expected_version: int | None = Field(None, ge=1)


class AcceptBody(ClaimDecision):
    """The carrier accepts an amount (at most the claim). 快递认可的金额。"""

    amount: Positive


class PayBody(ClaimDecision):
    """The carrier paid (at most what it accepted). 快递实际赔付。"""

    amount: Positive
    paid_at: Instant | None = None


class RefuseBody(ClaimDecision):
    """The carrier refuses the claim. 快递拒赔。"""

    reason: str = Field(min_length=1, max_length=500)


class ClaimPublic(BaseModel):
    id: str
    follow_up_id: str
    case_id: str
    order_id: str
    shop_id: str
    carrier: str
    tracking_no: str | None
    status: ClaimStatus
    goods_amount: MoneyOut
    postage_amount: MoneyOut
    claimed_amount: MoneyOut
    accepted_amount: MoneyOut | None
    paid_amount: MoneyOut | None
    refusal_reason: str | None
    note: str | None
    claimed_by: str
    claimed_at: Utc
    decided_at: Utc | None
    paid_at: Utc | None
    version: int


def public(claim: CarrierClaim) -> dict[str, Any]:
    return ClaimPublic.model_validate(claim, from_attributes=True).model_dump(mode="json")


@router.post(
    "/cases/{case_id}/carrier-claim",
    status_code=201,
    response_model=ClaimPublic,
    summary="Book the case's carrier claim 快递索赔 (R-CARRIER-CLAIM)",
    responses={
        409: {"description": "the case has its claim already (`claim_exists`)"},
        422: {"description": "not a carrier problem, carrier unknown, or nothing to claim"},
    },
)
async def book(
    case_id: ResourceIdPath, body: ClaimCreate, ctx: ContextDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    ctx.principal.require(Role.support, Role.ops)

    async def produce() -> tuple[int, Any]:
        claim = await claims.book(ctx, case_id, body.goods_amount, body.postage_amount, body.note)
        return 201, public(claim)

    return await idempotent(
        ctx.session,
        ctx.principal,
        idempotency_key,
        request_hash("POST", f"/v1/cases/{case_id}/carrier-claim", body.model_dump(mode="json")),
        ctx.now,
        produce,
    )


@router.get("/carrier-claims/{claim_id}", response_model=ClaimPublic, summary="Read a carrier claim")
async def read(claim_id: ResourceIdPath, ctx: ContextDep) -> dict[str, Any]:
    ctx.principal.require(Role.support, Role.ops)
    return public(await claims.get(ctx.session, ctx.principal, claim_id))


DECIDE: dict[int | str, dict[str, Any]] = {
    409: {"description": "stale version, or a move the claim's status does not allow"}
}


@router.post("/carrier-claims/{claim_id}/accept", response_model=ClaimPublic, responses=DECIDE)
async def accept(claim_id: ResourceIdPath, body: AcceptBody, ctx: ContextDep, if_match: IfMatchDep) -> Any:
    """The carrier accepts the claim, for at most the amount claimed. 快递同意赔付。"""
    claim = await claims.decide(
        ctx, claim_id, ClaimAction.accept, amount=body.amount, expected_version=_version(body, if_match)
    )
    return await _committed(ctx, claim)


@router.post("/carrier-claims/{claim_id}/pay", response_model=ClaimPublic, responses=DECIDE)
async def pay(claim_id: ResourceIdPath, body: PayBody, ctx: ContextDep, if_match: IfMatchDep) -> Any:
    """The carrier paid an accepted claim, at most the amount it accepted. 快递已赔付。"""
    claim = await claims.decide(
        ctx,
        claim_id,
        ClaimAction.pay,
        amount=body.amount,
        paid_at=body.paid_at,
        expected_version=_version(body, if_match),
    )
    return await _committed(ctx, claim)


@router.post("/carrier-claims/{claim_id}/refuse", response_model=ClaimPublic, responses=DECIDE)
async def refuse(claim_id: ResourceIdPath, body: RefuseBody, ctx: ContextDep, if_match: IfMatchDep) -> Any:
    """The carrier refuses the claim. 快递拒赔。"""
    claim = await claims.decide(
        ctx, claim_id, ClaimAction.refuse, reason=body.reason, expected_version=_version(body, if_match)
    )
    return await _committed(ctx, claim)


async def _committed(ctx: ContextDep, claim: CarrierClaim) -> dict[str, Any]:
    answer = public(claim)
    await ctx.session.commit()
    return answer


def _version(body: ClaimDecision, if_match: int | None) -> int | None:
    return body.expected_version if body.expected_version is not None else if_match


CLAIMS = (
    Column("id", "索赔单号"),
    Column("claimed_at", "登记时间", "time"),
    Column("carrier", "快递公司"),
    Column("tracking_no", "快递单号"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("status", "索赔状态"),
    Column("goods_amount", "货值", "money"),
    Column("postage_amount", "运费", "money"),
    Column("claimed_amount", "索赔金额", "money"),
    Column("accepted_amount", "快递认可金额", "money"),
    Column("paid_amount", "快递赔付金额", "money"),
    Column("paid_at", "赔付时间", "time"),
    Column("refusal_reason", "拒赔原因"),
    Column("note", "备注"),
    Column("claimed_by", "登记人"),
)
TOTALS = (
    Column("carrier", "快递公司"),
    Column("month", "月份"),
    Column("claims", "索赔单数", "number"),
    Column("claimed", "索赔金额", "money"),
    Column("accepted", "快递认可金额", "money"),
    Column("paid", "已赔付金额", "money"),
    Column("refused", "拒赔金额", "money"),
    Column("outstanding", "待赔付金额", "money"),
)
REPORT = (
    Column("carrier", "快递公司"),
    Column("tracking_no", "快递单号"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("problem", "问题"),
    Column("registered_at", "登记时间", "time"),
    Column("reported_at", "报快递时间", "time"),
    Column("photos", "照片"),
    Column("recipient_name", "收件人"),
    Column("recipient_phone", "收件人电话"),
    Column("recipient_address", "收件地址"),
    Column("carrier_claim.status", "索赔状态"),
    Column("goods_amount", "货值", "money"),
    Column("postage_amount", "运费", "money"),
    Column("claimed_amount", "索赔金额", "money"),
    Column("verdict", "快递核实结果"),
)


@router.get(
    "/registers/carrier-claims", responses=FORMATS_DOC, summary="快递索赔表: carrier claims and their outcome"
)
async def claims_register(
    ctx: ContextDep,
    format: FormatQ = "json",
    carrier: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$")] = None,
    status: ClaimStatus | None = None,
    since: Since = None,
    limit: Limit = 1000,
) -> Response:
    ctx.principal.require(Role.support, Role.ops)
    found = await claims.listed(
        ctx.session, ctx.principal, carrier=carrier, status=status, since=since, limit=limit
    )
    return register_response([public(c) for c in found], CLAIMS, format, "carrier-claims", "快递索赔表")


@router.get(
    "/registers/carrier-claims/totals",
    responses=FORMATS_DOC,
    summary="快递索赔汇总: claims per carrier and month (Beijing time)",
)
async def claims_totals(
    ctx: ContextDep,
    format: FormatQ = "json",
    carrier: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$")] = None,
    since: Since = None,
) -> Response:
    ctx.principal.require(Role.support, Role.ops)
    found = await claims.listed(ctx.session, ctx.principal, carrier=carrier, since=since, limit=1_000_000)
    return register_response(claims.totals(found), TOTALS, format, "carrier-claims-totals", "快递索赔汇总")


@router.get(
    "/registers/carrier-report",
    responses=FORMATS_DOC,
    summary="报快递: one carrier's problem parcels, photos, claims and recipients (R-CARRIER-REPORT)",
)
async def carrier_report(
    ctx: ContextDep, carrier: CarrierQ, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    """The recipient's name, phone and address are filled for support only; ops sees them empty."""
    ctx.principal.require(Role.support, Role.ops)
    rows = await claims.report(ctx.session, ctx.principal, carrier, since, limit)
    return register_response(rows, REPORT, format, "carrier-report", f"报快递-{carrier}")
