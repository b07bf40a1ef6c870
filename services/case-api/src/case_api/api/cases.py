from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from aftersales_shared.auth import Role
from aftersales_shared.fields import NO_NUL_PATTERN, IdQuery, Instant, ResourceIdPath, TextQuery
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.web import IdempotencyKey
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from .. import handlers
from .. import repository as repo
from ..domain.model import InvalidRequest
from ..domain.workflow import MOVES, Action, CaseStatus
from ..models import Case
from ..schemas import (
    ACTION_BODIES,
    ActionBody,
    AssigneeBody,
    CaseCreate,
    CasePublic,
    Reason,
    Remedy,
    TimelineEntry,
)
from .deps import ContextDep, FeedHorizonDep, IfMatchDep, UpdatedAfter

router = APIRouter(prefix="/v1/cases", tags=["cases"])
READERS = (Role.storefront, Role.support, Role.ops)
POLICY_REFUSAL = {"description": "refused by a policy rule (problem+json with rule, message_zh, message_en)"}
AssigneeQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=NO_NUL_PATTERN,
        description="the cases this person works (`staff:alice`), or `none` for the unassigned",
    ),
]
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


@router.get("", response_model=Page[CasePublic], summary="List cases, newest first; or the change feed")
async def list_cases(
    ctx: ContextDep,
    horizon: FeedHorizonDep,
    status: CaseStatus | None = None,
    remedy: Remedy | None = None,
    reason: Reason | None = None,
    order_id: IdQuery = None,
    shop_id: IdQuery = None,
    carrier: TextQuery = None,  # the carrier that shipped the order (its shipment.carrier)
    assignee: AssigneeQuery = None,
    created_after: Instant | None = None,
    updated_after: UpdatedAfter = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """With `updated_after`, the change feed: cases changed since, oldest change first by (`updated_at`,
    `id`); poll again with the `next_cursor` it returns (the same when nothing changed)."""
    ctx.principal.require(*READERS)
    filters = repo.equal_to(
        (Case.status, status),
        (Case.remedy, remedy),
        (Case.reason, reason),
        (Case.order_id, order_id),
        (Case.shop_id, shop_id),
    )
    filters += repo.created_after(Case.created_at, created_after) + repo.shipped_by(carrier)
    filters += repo.assigned_to(assignee)
    if updated_after is not None:
        rows = await repo.changes(
            ctx.session, Case, ctx.principal, Case.shop_id, filters, updated_after, cursor, limit, horizon
        )
        following = repo.feed_cursor(rows, limit, cursor)
    else:
        rows = await repo.page(
            ctx.session, Case, Case.id, ctx.principal, Case.shop_id, filters, cursor, limit
        )
        following = next_cursor(rows, limit)
    return {"items": [await public(ctx, c) for c in rows[:limit]], "next_cursor": following}


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


@router.put(
    "/{case_id}/assignee",
    response_model=CasePublic,
    summary="Take, release or assign a case 领取/释放/指派工单",
    responses={409: CONFLICT},
    tags=["case actions"],
)
async def set_assignee(
    case_id: ResourceIdPath, body: AssigneeBody, ctx: ContextDep, if_match: IfMatchDep
) -> dict[str, Any]:
    """Roles 角色: `support` takes a case for themself (`assignee` = their own principal name, e.g.
    `staff:alice`) or releases their own (`null`); `ops` assigns anyone. A case taken by someone else is a
    409 `already_assigned` for support. Writes an `assigned` timeline entry and bumps `version`; send
    `expected_version` (or `If-Match`) to be safe against concurrent edits; stale → 409.
    客服可领取(处理人为自己)或释放自己的工单,运营可指派任何人;已被他人领取返回 409。"""
    expected = body.expected_version if body.expected_version is not None else if_match
    case = await handlers.assign(ctx, case_id, body.assignee, expected)
    result = await public(ctx, case)
    await ctx.session.commit()
    return result


Endpoint = Callable[..., Awaitable[dict[str, Any]]]


def _action_endpoint(action: Action, body_model: type[ActionBody]) -> Endpoint:
    """The endpoint of one action: its own body model (required when the action needs a field)."""

    async def endpoint(
        case_id: ResourceIdPath, ctx: ContextDep, if_match: IfMatchDep, body: Any = None
    ) -> dict[str, Any]:
        case = await handlers.act(ctx, case_id, action, body or body_model(), if_match)
        result = await public(ctx, case)
        await ctx.session.commit()
        return result

    required = any(field.is_required() for field in body_model.model_fields.values())
    signature = inspect.signature(endpoint)
    body = signature.parameters["body"].replace(
        annotation=body_model if required else body_model | None,
        default=inspect.Parameter.empty if required else None,
    )
    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[body if p.name == "body" else p for p in signature.parameters.values()]
    )
    return endpoint


def _action_description(action: Action, body_model: type[ActionBody]) -> str:
    roles = ", ".join(f"`{role}`" for role in sorted(MOVES[action].roles))
    return (
        f"{inspect.getdoc(body_model)}\n\nRoles 角色: {roles}. From status 可操作状态: "
        + ", ".join(f"`{status}`" for status in sorted(MOVES[action].sources))
        + ". Send `expected_version` (or `If-Match`) to be safe against concurrent edits; stale → 409. "
        "携带 `expected_version`(或 If-Match)防止并发修改,版本过期返回 409。"
    )


for _action in Action:
    _body = ACTION_BODIES.get(_action, ActionBody)  # tests/unit/test_action_bodies.py: each has its own
    router.add_api_route(
        f"/{{case_id}}/actions/{_action}",
        _action_endpoint(_action, _body),
        methods=["POST"],
        name=f"case_{_action}",
        response_model=CasePublic,
        summary=f"Action `{_action}` on a case",
        description=_action_description(_action, _body),
        responses={422: POLICY_REFUSAL, 409: CONFLICT},
        tags=["case actions"],
    )


@router.post("/{case_id}/actions/{action}", include_in_schema=False)
async def unknown_action(case_id: ResourceIdPath, action: str, ctx: ContextDep) -> None:
    """Any other action name (the routes above take every action there is): 422 naming them."""
    raise InvalidRequest("action", f"no action {action!r}; the actions are {', '.join(Action)}")
