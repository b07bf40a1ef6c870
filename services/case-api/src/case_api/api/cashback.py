from __future__ import annotations

from typing import Annotated, Any, Literal

from aftersales_shared.auth import Role
from aftersales_shared.fields import IdQuery, ResourceIdPath, ResourceIdQuery
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.web import IdempotencyKey
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from .. import handlers
from .. import repository as repo
from ..models import CashbackTask
from ..schemas import CashbackCreate, CashbackDecision, CashbackPublic
from .deps import ContextDep, FeedHorizonDep, IfMatchDep, UpdatedAfter

router = APIRouter(prefix="/v1/cashback-tasks", tags=["cashback"])
Status = Literal["pending_verification", "approved", "rejected", "paid", "failed", "cancelled"]


@router.post(
    "",
    status_code=201,
    response_model=CashbackPublic,
    summary="Create a cashback task 返现任务单",
    responses={422: {"description": "invalid, or over the compensation cap (R-COMP-CAP)"}},
)
async def create(
    body: CashbackCreate, ctx: ContextDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def produce() -> tuple[int, Any]:
        task = await handlers.create_cashback(ctx, body)
        return 201, CashbackPublic(**task.model_dump()).model_dump(mode="json")

    return await idempotent(
        ctx.session,
        ctx.principal,
        idempotency_key,
        request_hash("POST", "/v1/cashback-tasks", body.model_dump(mode="json")),
        ctx.now,
        produce,
    )


@router.get(
    "", response_model=Page[CashbackPublic], summary="List cashback tasks, newest first; or the change feed"
)
async def list_tasks(
    ctx: ContextDep,
    horizon: FeedHorizonDep,
    status: Status | None = None,
    order_id: IdQuery = None,
    case_id: ResourceIdQuery = None,
    updated_after: UpdatedAfter = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """With `updated_after`, the change feed: tasks changed since, oldest change first by (`updated_at`,
    `id`); poll again with the `next_cursor` it returns (the same when nothing changed)."""
    ctx.principal.require(Role.support, Role.ops, Role.storefront)
    filters = repo.equal_to(
        (CashbackTask.status, status),
        (CashbackTask.order_id, order_id),
        (CashbackTask.case_id, case_id),
    )
    if updated_after is not None:
        rows = await repo.changes(
            ctx.session,
            CashbackTask,
            ctx.principal,
            CashbackTask.shop_id,
            filters,
            updated_after,
            cursor,
            limit,
            horizon,
        )
        following = repo.feed_cursor(rows, limit, cursor)
    else:
        rows = await repo.page(
            ctx.session,
            CashbackTask,
            CashbackTask.id,
            ctx.principal,
            CashbackTask.shop_id,
            filters,
            cursor,
            limit,
        )
        following = next_cursor(rows, limit)
    return {"items": [CashbackPublic(**t.model_dump()) for t in rows[:limit]], "next_cursor": following}


@router.get("/{task_id}", response_model=CashbackPublic, summary="Read a cashback task")
async def get_task(task_id: ResourceIdPath, ctx: ContextDep) -> CashbackPublic:
    ctx.principal.require(Role.support, Role.ops, Role.storefront)
    return CashbackPublic(**(await repo.get_task(ctx.session, ctx.principal, task_id)).model_dump())


def _expected(body: CashbackDecision, if_match: int | None) -> int | None:
    return body.expected_version if body.expected_version is not None else if_match


@router.post("/{task_id}/approve", response_model=CashbackPublic, summary="Verify and approve (support)")
async def approve(
    task_id: ResourceIdPath, ctx: ContextDep, if_match: IfMatchDep, body: CashbackDecision | None = None
) -> CashbackPublic:
    """Approval emits `aftersales.cashback.approved.v1`; the payout worker pays it before the day's cut-off.
    Send `expected_version` (or `If-Match`); stale → 409."""
    body = body or CashbackDecision()
    task = await handlers.decide_cashback(ctx, task_id, True, _expected(body, if_match), None)
    result = CashbackPublic(**task.model_dump())
    await ctx.session.commit()
    return result


@router.post("/{task_id}/reject", response_model=CashbackPublic, summary="Reject (support)")
async def reject(
    task_id: ResourceIdPath, ctx: ContextDep, if_match: IfMatchDep, body: CashbackDecision | None = None
) -> CashbackPublic:
    body = body or CashbackDecision()
    task = await handlers.decide_cashback(ctx, task_id, False, _expected(body, if_match), body.reason)
    result = CashbackPublic(**task.model_dump())
    await ctx.session.commit()
    return result
