from __future__ import annotations

from typing import Annotated, Any

from aftersales_shared.auth import Role
from aftersales_shared.export import FORMATS_DOC, Column, Format, register_response
from aftersales_shared.fields import Instant
from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlmodel import SQLModel

from .. import claims, repository
from ..models import CashbackTask, InspectionEntry, LogisticsFollowUp, RetentionEntry
from .deps import ContextDep

router = APIRouter(prefix="/v1/registers", tags=["registers"])
FormatQ = Annotated[Format, Query(alias="format")]

FOLLOW_UP = (
    Column("id", "登记编号"),
    Column("created_at", "登记时间", "time"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("carrier", "快递公司"),
    Column("tracking_no", "快递单号"),
    Column("problem", "问题"),
    Column("evidence_ids", "凭证"),
    Column("reported_at", "报快递时间", "time"),
    Column("sla_due_at", "快递答复期限", "time"),
    Column("escalated_at", "升级时间", "time"),
    Column("verdict", "快递核实结果"),
    Column("outcome", "处理结果"),
    Column("carrier_cost", "快递承担费用", "money"),
    Column("carrier_claim.status", "索赔状态"),  # R-CARRIER-CLAIM
    Column("carrier_claim.amount", "索赔金额", "money"),
)
CASHBACK = (
    Column("id", "返现任务单号"),
    Column("created_at", "创建时间", "time"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("line_id", "订单行"),
    Column("reason", "返现原因"),
    Column("amount", "金额", "money"),
    Column("payee_name", "收款人"),
    Column("payee_account", "支付宝账号"),
    Column("status", "状态"),
    Column("verified_by", "核实人"),
    Column("verified_at", "核实时间", "time"),
    Column("paid_at", "打款时间", "time"),
    Column("failure_code", "失败原因"),
    Column("cancelled_at", "取消时间", "time"),
    # paid before its grant was withdrawn: ops recovers the money
    Column("clawback_requested_at", "追回申请时间", "time"),
)
RETENTION = (
    Column("id", "登记编号"),
    Column("recorded_at", "登记时间", "time"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("remedy", "售后类型"),
    Column("reason", "原因"),
    Column("real_reason", "客户真实原因"),
    Column("offer", "挽留方案"),
    Column("outcome", "结果"),
    Column("recorded_by", "登记人"),
)
INSPECTIONS = (  # R-INSPECT
    Column("id", "登记编号"),
    Column("recorded_at", "验货时间", "time"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("remedy", "售后类型"),
    Column("reason", "原因"),
    Column("passed", "验货通过"),
    Column("tags_on", "吊牌完好"),
    Column("worn", "穿过"),
    Column("washed", "洗过"),
    Column("hang_tag_size", "吊牌码标"),
    Column("wash_label_size", "洗水唛码标"),
    Column("neck_label_size", "领标码标"),
    Column("sizes_agree", "码标一致"),
    Column("parcel_weight_g", "实称重量(克)", "number"),
    Column("expected_weight_g", "应有重量(克)", "number"),
    Column("weight_difference_g", "重量差(克)", "number"),
    Column("notes", "备注"),
    Column("recorded_by", "验货人"),
)


async def _rows(
    ctx: ContextDep, model: type[SQLModel], time_column: object, since: Instant | None, limit: int
) -> list[dict[str, Any]]:
    ctx.principal.require(Role.support, Role.ops)
    rows = await repository.newest(ctx.session, model, ctx.principal, time_column, [], since, limit)
    return [row.model_dump(mode="json") for row in rows]


Since = Annotated[Instant | None, Query(description="entries from this time on")]
Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get(
    "/logistics-follow-up", responses=FORMATS_DOC, summary="物流跟进表: carrier problems and their SLA"
)
async def logistics_follow_up(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, LogisticsFollowUp, LogisticsFollowUp.created_at, since, limit)
    found = await claims.of_follow_ups(ctx.session, (row["id"] for row in rows))
    for row in rows:
        row["carrier_claim"] = claims.summary(found.get(row["id"]))
    return register_response(rows, FOLLOW_UP, format, "logistics-follow-up", "物流跟进表")


@router.get("/cashback", responses=FORMATS_DOC, summary="返现表: cashback tasks and their payment")
async def cashback(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, CashbackTask, CashbackTask.created_at, since, limit)
    for row in rows:
        payee = row.pop("payee")
        row["payee_name"], row["payee_account"] = payee.get("name"), payee.get("alipay_account")
    return register_response(rows, CASHBACK, format, "cashback", "返现表")


@router.get("/retention", responses=FORMATS_DOC, summary="挽留登记: offers and outcomes")
async def retention(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    rows = await _rows(ctx, RetentionEntry, RetentionEntry.recorded_at, since, limit)
    return register_response(rows, RETENTION, format, "retention", "挽留登记")


@router.get("/inspections", responses=FORMATS_DOC, summary="验货登记: what each inspection checked and found")
async def inspections(
    ctx: ContextDep, format: FormatQ = "json", since: Since = None, limit: Limit = 1000
) -> Response:
    """R-INSPECT: size marks (R-SIZE), worn or washed and tags (R-RESALEABLE), parcel weight (R-MISSING)."""
    rows = await _rows(ctx, InspectionEntry, InspectionEntry.recorded_at, since, limit)
    return register_response(rows, INSPECTIONS, format, "inspections", "验货登记")
