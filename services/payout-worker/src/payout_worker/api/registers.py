"""The cashback register 返现表: what was paid on a day (Asia/Shanghai), as JSON or CSV. A transfer whose
cashback task was cancelled after it was sent shows its clawback columns: money for ops to claw back."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated

from aftersales_shared.auth import Role
from aftersales_shared.clock import SHANGHAI, as_utc
from aftersales_shared.export import Format, register_response
from aftersales_shared.fields import Day
from aftersales_shared.money import fmt
from aftersales_shared.web import PrincipalDep, SessionDep
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .. import repository as repo

router = APIRouter(prefix="/v1/registers", tags=["registers"])
COLUMNS = (
    "paid_at",
    "payout_id",
    "out_biz_no",
    "cashback_task_id",
    "order_id",
    "case_id",
    "shop_id",
    "reason",
    "amount",
    "payee_name",
    "payee_account",
    "provider_order_id",
    "batch_id",
    "approved_at",
    "clawback_requested_at",
    "clawback_reason",
)


@router.get(
    "/cashback",
    summary="返现表: the transfers paid on a day (Asia/Shanghai)",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
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
            **p.model_dump(mode="json", include=set(COLUMNS)),
            "payout_id": p.id,
            "amount": fmt(p.amount),
            "paid_at": _local(p.paid_at),
            "clawback_requested_at": _local(p.clawback_requested_at),
        }
        for p in payouts
    ]
    return register_response(rows, COLUMNS, format, f"cashback-{day.isoformat()}")


def _local(at: datetime | None) -> str | None:
    return as_utc(at).astimezone(SHANGHAI).isoformat() if at else None
