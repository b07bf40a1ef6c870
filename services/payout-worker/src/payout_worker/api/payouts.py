"""The payout ledger, its batches, and flushing (API.md, payout-worker)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aftersales_shared.auth import Principal, Role
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.problems import not_found
from aftersales_shared.web import IdempotencyKey, PrincipalDep, SessionDep
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import col

from .. import repository as repo
from ..engine import PayoutEngine
from ..models import Payout, PayoutStatus
from ..schemas import BatchPublic, FlushResult, PayoutPublic

router = APIRouter(prefix="/v1", tags=["payouts"])
StatusQ = Literal["pending", "batched", "submitted", "paid", "failed", "unknown", "cancelled"]
LimitQ = Annotated[int, Query(ge=1, le=200)]


def _reader(principal: Principal) -> Principal:
    return principal.require(Role.ops, Role.support)


@router.get("/payouts", response_model=Page[PayoutPublic], summary="The payout ledger, newest first")
async def list_payouts(
    session: SessionDep,
    principal: PrincipalDep,
    cashback_task_id: str | None = None,
    status: StatusQ | None = None,
    order_id: str | None = None,
    batch_id: str | None = None,
    cursor: str | None = None,
    limit: LimitQ = 50,
) -> dict[str, Any]:
    _reader(principal)
    filters = [
        col(c) == v
        for c, v in (
            (Payout.cashback_task_id, cashback_task_id),
            (Payout.status, status),
            (Payout.order_id, order_id),
            (Payout.batch_id, batch_id),
        )
        if v is not None
    ]
    rows = await repo.page_payouts(session, principal, filters, cursor, limit)
    return {
        "items": [PayoutPublic(**p.model_dump()) for p in rows[:limit]],
        "next_cursor": next_cursor(rows, limit),
    }


@router.get("/payouts/{payout_id}", response_model=PayoutPublic, summary="One ledger entry")
async def get_payout(payout_id: str, session: SessionDep, principal: PrincipalDep) -> PayoutPublic:
    _reader(principal)
    payout = await session.get(Payout, payout_id)
    if payout is None:
        raise not_found("payout", payout_id)
    principal.require_shop(payout.shop_id, hide=True, what="payout")
    return PayoutPublic(**payout.model_dump())


@router.get(
    "/batches",
    response_model=Page[BatchPublic],
    summary="Batches with counts per status and totals (as far as the key's shops go)",
)
async def list_batches(
    session: SessionDep,
    principal: PrincipalDep,
    status: Literal["closed", "submitted", "completed"] | None = None,
    cursor: str | None = None,
    limit: LimitQ = 50,
) -> dict[str, Any]:
    principal.require(Role.ops)
    rows = await repo.page_batches(session, principal, status, cursor, limit)
    items = [BatchPublic(**batch.model_dump(), **totals) for batch, totals in rows[:limit]]
    return {"items": items, "next_cursor": next_cursor([b for b, _ in rows], limit)}


@router.post(
    "/batches/flush",
    status_code=202,
    response_model=FlushResult,
    summary="Pay everything approved now instead of waiting for the cut-off (ops)",
)
async def flush(
    request: Request, session: SessionDep, principal: PrincipalDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Closes every pending payout (of the key's shops) into batches of at most 1,000 and wakes the
    sender; follow them with `GET /v1/batches` and `GET /v1/payouts?batch_id=`."""
    principal.require(Role.ops)
    engine: PayoutEngine = request.app.state.engine
    now: datetime = engine.clock.now()

    async def produce() -> tuple[int, Any]:
        batches = await engine.close_batches(session, trigger="flush", due_by=None, shops=principal.shops)
        return 202, FlushResult(
            batches=[b.id for b in batches], payouts=sum(b.size for b in batches)
        ).model_dump()

    response = await idempotent(
        session, principal, idempotency_key, request_hash("POST", "/v1/batches/flush", None), now, produce
    )
    engine.wake.set()
    return response


__all__ = ["PayoutStatus", "router"]
