"""The cashback register 返现表: what was paid on a day (Asia/Shanghai), as JSON, xlsx or CSV. A transfer
whose cashback task was cancelled after it was sent shows its clawback columns: money for ops to claw back."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated

from aftersales_shared.auth import Role
from aftersales_shared.clock import SHANGHAI, as_utc
from aftersales_shared.export import FORMATS_DOC, Column, Format, register_response
from aftersales_shared.fields import Day
from aftersales_shared.money import fmt
from aftersales_shared.web import PrincipalDep, SessionDep
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .. import repository as repo

router = APIRouter(prefix="/v1/registers", tags=["registers"])
COLUMNS = (
    Column("paid_at", "打款时间", "time"),
    Column("payout_id", "打款单号"),
    Column("out_biz_no", "商户转账单号"),
    Column("cashback_task_id", "返现任务单号"),
    Column("order_id", "订单号"),
    Column("case_id", "售后单号"),
    Column("shop_id", "店铺"),
    Column("reason", "返现原因"),
    Column("amount", "金额", "money"),
    Column("payee_name", "收款人"),
    Column("payee_account", "支付宝账号"),
    Column("provider_order_id", "支付宝单号"),
    Column("batch_id", "批次号"),
    Column("approved_at", "核实时间", "time"),
    Column("clawback_requested_at", "追回申请时间", "time"),
    Column("clawback_reason", "追回原因"),
)


@router.get(
    "/cashback",
    summary="返现表: the transfers paid on a day (Asia/Shanghai)",
    responses=FORMATS_DOC,
)
async def cashback_register(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    day: Annotated[Day | None, Query(alias="date", description="YYYY-MM-DD (2000 up to 2099); today")] = None,
    format: Annotated[Format, Query(alias="format")] = "json",
) -> Response:
    principal.require(Role.ops, Role.support)
    day = day or request.app.state.clock.now().astimezone(SHANGHAI).date()
    start = datetime.combine(day, time(0), SHANGHAI)
    payouts = await repo.paid_between(session, principal, start, start + timedelta(days=1))
    rows = [
        {
            **p.model_dump(mode="json", include={c.key for c in COLUMNS}),
            "payout_id": p.id,
            "amount": fmt(p.amount),
            "paid_at": _local(p.paid_at),
            "approved_at": _local(p.approved_at),
            "clawback_requested_at": _local(p.clawback_requested_at),
        }
        for p in payouts
    ]
    return register_response(rows, COLUMNS, format, f"cashback-{day.isoformat()}", "返现表")


def _local(at: datetime | None) -> str | None:
    return as_utc(at).astimezone(SHANGHAI).isoformat() if at else None
