"""The payout ledger, its batches, and flushing (API.md, payout-worker)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from aftersales_shared.auth import Principal, Role
from aftersales_shared.fields import ResourceIdPath, ResourceIdQuery, TextQuery
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.problems import not_found
from aftersales_shared.web import IdempotencyKey, PrincipalDep, SessionDep
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers
from .. import repository as repo
from ..engine import PayoutEngine
from ..handlers import ResultQueue
from ..models import Payout, PayoutStatus
from ..schemas import BatchPublic, FlushResult, PayoutPublic, ReviewIn

router = APIRouter(prefix="/v1", tags=["payouts"])
LimitQ = Annotated[int, Query(ge=1, le=200)]


def _reader(principal: Principal) -> Principal:
    return principal.require(Role.ops, Role.support)


@router.get("/payouts", response_model=Page[PayoutPublic], summary="The payout ledger, newest first")
async def list_payouts(
    session: SessionDep,
    principal: PrincipalDep,
    cashback_task_id: ResourceIdQuery = None,
    status: PayoutStatus | None = None,
    order_id: TextQuery = None,
    batch_id: ResourceIdQuery = None,
    clawback: Annotated[
        bool | None, Query(description="true: only clawback items (cancelled after the transfer)")
    ] = None,
    cursor: str | None = None,
    limit: LimitQ = 50,
) -> dict[str, Any]:
    _reader(principal)
    filters: list[ColumnElement[bool]] = [
        col(c) == v
        for c, v in (
            (Payout.cashback_task_id, cashback_task_id),
            (Payout.status, status),
            (Payout.order_id, order_id),
            (Payout.batch_id, batch_id),
        )
        if v is not None
    ]
    if clawback is not None:
        requested = col(Payout.clawback_requested_at)
        filters.append(requested.is_not(None) if clawback else requested.is_(None))
    rows = await repo.page_payouts(session, principal, filters, cursor, limit)
    return {
        "items": [PayoutPublic(**p.model_dump()) for p in rows[:limit]],
        "next_cursor": next_cursor(rows, limit),
    }


@router.get("/payouts/{payout_id}", response_model=PayoutPublic, summary="One ledger entry")
async def get_payout(payout_id: ResourceIdPath, session: SessionDep, principal: PrincipalDep) -> PayoutPublic:
    _reader(principal)
    payout = await session.get(Payout, payout_id)
    if payout is None:
        raise not_found("payout", payout_id)
    principal.require_shop(payout.shop_id, hide=True, what="payout", ident=payout_id)
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


Review = Callable[[AsyncSession, str, Principal, str | None, ResultQueue], Awaitable[Payout]]


async def _review(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    idempotency_key: str | None,
    payout_id: str,
    action: str,
    body: ReviewIn | None,
    command: Review,
) -> JSONResponse:
    principal.require(Role.ops)
    engine: PayoutEngine = request.app.state.engine
    note = body.note if body is not None else None

    async def produce() -> tuple[int, Any]:
        payout = await command(session, payout_id, principal, note, engine.results)
        return 200, PayoutPublic(**payout.model_dump()).model_dump(mode="json")

    fingerprint = request_hash("POST", f"/v1/payouts/{payout_id}/{action}", {"note": note})
    response = await idempotent(session, principal, idempotency_key, fingerprint, engine.clock.now(), produce)
    engine.wake.set()  # a released payout already due is batched at once
    return response


@router.post(
    "/payouts/{payout_id}/release",
    response_model=PayoutPublic,
    summary="Release a payout held for review: it is paid with its batch (ops)",
    responses={404: {"description": "no such payout for this key"}, 409: {"description": "not held"}},
)
async def release_payout(
    payout_id: ResourceIdPath,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    body: ReviewIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """`held_for_review → pending`. It is due at the cut-off of the day it was approved; when that has
    passed, the next batch takes it (within a tick). Records who released it, when, and the note."""
    return await _review(
        request, session, principal, idempotency_key, payout_id, "release", body, handlers.release_payout
    )


@router.post(
    "/payouts/{payout_id}/cancel",
    response_model=PayoutPublic,
    summary="Cancel a payout held for review or pending; case-api releases the money (ops)",
    responses={
        404: {"description": "no such payout for this key"},
        409: {"description": "neither held nor pending"},
    },
)
async def cancel_payout(
    payout_id: ResourceIdPath,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    body: ReviewIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """`held_for_review | pending → cancelled`, and `payouts.payout.failed.v1` with failure_code
    `CANCELLED_BY_OPS` on payouts.results.v1, so the cashback task fails and its money is released.
    Records who cancelled it, when, and the note."""
    return await _review(
        request, session, principal, idempotency_key, payout_id, "cancel", body, handlers.cancel_payout
    )


__all__ = ["PayoutStatus", "router"]
