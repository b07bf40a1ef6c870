from __future__ import annotations

from typing import Annotated, Any

from aftersales_shared.auth import Role
from aftersales_shared.export import Format, register_response
from aftersales_shared.fields import Instant
from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import SQLModel, col, select

from ..models import CashbackTask, LogisticsFollowUp, RetentionEntry
from .deps import ContextDep

router = APIRouter(prefix="/v1/registers", tags=["registers"])
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}
}
FormatQ = Annotated[Format, Query(alias="format")]

FOLLOW_UP = (
    "id",
    "created_at",
    "order_id",
    "case_id",
    "shop_id",
    "carrier",
    "tracking_no",
    "problem",
    "evidence_ids",
    "reported_at",
    "sla_due_at",
    "escalated_at",
    "verdict",
    "outcome",
    "carrier_cost",
)
CASHBACK = (
    "id",
    "created_at",
    "order_id",
    "case_id",
    "shop_id",
    "line_id",
    "reason",
    "amount",
    "payee_name",
    "payee_account",
    "status",
    "verified_by",
    "verified_at",
    "paid_at",
    "failure_code",
    "cancelled_at",
    "clawback_requested_at",  # paid before its grant was withdrawn: ops recovers the money
)
RETENTION = (
    "id",
    "recorded_at",
    "order_id",
    "case_id",
    "shop_id",
    "remedy",
    "reason",
    "real_reason",
    "offer",
    "outcome",
    "recorded_by",
)


async def _rows(
    ctx: ContextDep, model: type[SQLModel], time_column: object, since: Instant | None, limit: int
) -> list[dict[str, Any]]:
    ctx.principal.require(Role.support, Role.ops)
    query = select(model)
    if ctx.principal.shops is not None:
        query = query.where(col(model.shop_id).in_(sorted(ctx.principal.shops)))  # type: ignore[attr-defined]
    if since is not None:
        query = query.where(col(time_column) >= since)
    rows = await ctx.session.exec(query.order_by(col(time_column).desc()).limit(limit))
    return [row.model_dump(mode="json") for row in rows.all()]


Since = Annotated[Instant | None, Query(description="entries from this time on")]
Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get("/logistics-follow-up", responses=CSV, summary="物流跟进表: carrier problems and their SLA")
async def logistics_follow_up(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, LogisticsFollowUp, LogisticsFollowUp.created_at, since, limit)
    return register_response(rows, FOLLOW_UP, format, "logistics-follow-up")


@router.get("/cashback", responses=CSV, summary="返现表: cashback tasks and their payment")
async def cashback(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, CashbackTask, CashbackTask.created_at, since, limit)
    for row in rows:
        payee = row.pop("payee")
        row["payee_name"], row["payee_account"] = payee.get("name"), payee.get("alipay_account")
    return register_response(rows, CASHBACK, format, "cashback")


@router.get("/retention", responses=CSV, summary="挽留登记: offers and outcomes")
async def retention(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, RetentionEntry, RetentionEntry.recorded_at, since, limit)
    return register_response(rows, RETENTION, format, "retention")
