from __future__ import annotations

from typing import Annotated, Any

from aftersales_shared.auth import Role
from aftersales_shared.fields import IdQuery, Instant, ResourceIdPath
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.web import IdempotencyKey
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from .. import handlers
from .. import repository as repo
from ..domain.workflow import Action, CaseStatus
from ..models import Case
from ..schemas import ActionIn, CaseCreate, CasePublic, Reason, Remedy, TimelineEntry
from .deps import ContextDep, IfMatchDep

router = APIRouter(prefix="/v1/cases", tags=["cases"])
READERS = (Role.storefront, Role.support, Role.ops)
POLICY_REFUSAL = {"description": "refused by a policy rule (problem+json with rule, message_zh, message_en)"}
CONFLICT = {
    "description": "stale version, a move the case's status does not allow, or a reused Idempotency-Key"
}


async def public(ctx: handlers.Context, case: Case, *, evidence_attached: bool = True) -> dict[str, Any]:
    """The case as the API shows it; `evidence_attached=False` (a case just opened without any) spares
    the read of its evidence."""
    evidence = [
        {
            "evidence_id": link.evidence_id,
            "kind": item.kind,
            "sha256": item.sha256,
            "content_type": item.content_type,
            "reused": link.reused,
            "reused_from_order_id": link.reused_from_order_id,
        }
        for link, item in (await repo.case_evidence(ctx.session, case.id) if evidence_attached else [])
    ]
    return CasePublic(**case.model_dump(), evidence=evidence).model_dump(mode="json")


@router.post(
    "",
    status_code=201,
    response_model=CasePublic,
    summary="Open an after-sales case",
    responses={422: POLICY_REFUSAL, 409: CONFLICT},
)
async def open_case(
    body: CaseCreate, ctx: ContextDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Evaluates the policy; a refusal is a 422 `policy_refused` and creates nothing."""

    async def produce() -> tuple[int, Any]:
        case = await handlers.open_case(ctx, body)
        return 201, await public(ctx, case, evidence_attached=bool(body.evidence_ids))

    return await idempotent(
        ctx.session,
        ctx.principal,
        idempotency_key,
        request_hash("POST", "/v1/cases", body.model_dump(mode="json")),
        ctx.now,
        produce,
    )


@router.get("", response_model=Page[CasePublic], summary="List cases, newest first")
async def list_cases(
    ctx: ContextDep,
    status: CaseStatus | None = None,
    remedy: Remedy | None = None,
    reason: Reason | None = None,
    order_id: IdQuery = None,
    shop_id: IdQuery = None,
    created_after: Instant | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    ctx.principal.require(*READERS)
    filters = repo.equal_to(
        (Case.status, status),
        (Case.remedy, remedy),
        (Case.reason, reason),
        (Case.order_id, order_id),
        (Case.shop_id, shop_id),
    )
    filters += repo.created_after(Case.created_at, created_after)
    rows = await repo.page(ctx.session, Case, Case.id, ctx.principal, Case.shop_id, filters, cursor, limit)
    return {"items": [await public(ctx, c) for c in rows[:limit]], "next_cursor": next_cursor(rows, limit)}


@router.get("/{case_id}", response_model=CasePublic, summary="Read a case")
async def get_case(case_id: ResourceIdPath, ctx: ContextDep) -> dict[str, Any]:
    ctx.principal.require(*READERS)
    return await public(ctx, await repo.get_case(ctx.session, ctx.principal, case_id))


@router.get(
    "/{case_id}/timeline", response_model=list[TimelineEntry], summary="Every change, with actor and data"
)
async def get_timeline(case_id: ResourceIdPath, ctx: ContextDep) -> list[TimelineEntry]:
    ctx.principal.require(*READERS)
    await repo.get_case(ctx.session, ctx.principal, case_id)
    return [TimelineEntry(**e.model_dump()) for e in await repo.timeline(ctx.session, case_id)]


@router.post(
    "/{case_id}/actions/{action}",
    response_model=CasePublic,
    summary="Move a case through its workflow",
    responses={422: POLICY_REFUSAL, 409: CONFLICT},
)
async def run_action(
    case_id: ResourceIdPath,
    action: Action,
    ctx: ContextDep,
    if_match: IfMatchDep,
    body: ActionIn | None = None,
) -> dict[str, Any]:
    """Send `expected_version` (or `If-Match`) to be safe against concurrent edits; stale → 409.

    Roles: `storefront` attaches evidence, submits return tracking, withdraws; `warehouse` records receipt,
    inspection and intercepts; `support` does everything else."""
    case = await handlers.act(ctx, case_id, action, body or ActionIn(), if_match)
    result = await public(ctx, case)
    await ctx.session.commit()
    return result
