from __future__ import annotations

from decimal import Decimal

from aftersales_shared.auth import Role
from aftersales_shared.fields import OrderIdPath
from fastapi import APIRouter, Response

from .. import handlers, ledger
from .. import repository as repo
from ..domain import policy
from ..models import Order
from ..schemas import LinePublic, OptionPublic, OptionsPublic, OrderIn, OrderPublic
from .deps import ContextDep

router = APIRouter(prefix="/v1/orders", tags=["orders"])


async def _public(ctx: handlers.Context, order: Order) -> OrderPublic:
    rows = await repo.order_lines(ctx.session, order.order_id)
    domain = handlers.domain_order(order, rows)
    history = await ledger.line_history(ctx.session, order.order_id)
    lines = []
    for row in rows:
        used = history[row.line_id].compensated if row.line_id in history else Decimal("0.00")
        lines.append(
            LinePublic(
                **row.model_dump(exclude={"order_id", "position"}),
                compensated=used,
                remaining_allowance=policy.remaining_allowance(domain, row.line_id, history),
            )
        )
    options = policy.after_sales_options(domain, history, ctx.now)
    closed = any(o.rule == "R-BEYOND-7D" for o in options)
    return OrderPublic(
        **order.model_dump(exclude={"buyer_id"}), lines=lines, subjective_returns_closed=closed
    )


@router.put(
    "/{order_id}",
    response_model=OrderPublic,
    summary="Upsert an order snapshot",
    responses={201: {"description": "created", "model": OrderPublic}},
)
async def put_order(order_id: OrderIdPath, body: OrderIn, ctx: ContextDep, response: Response) -> OrderPublic:
    """Storefronts push the order as it is now; later pushes (shipment, sign-off) replace it."""
    order, created = await handlers.upsert_order(ctx, order_id, body)
    public = await _public(ctx, order)
    await ctx.session.commit()
    response.status_code = 201 if created else 200
    return public


@router.get("/{order_id}", response_model=OrderPublic, summary="Read an order with what was compensated")
async def get_order(order_id: OrderIdPath, ctx: ContextDep) -> OrderPublic:
    ctx.principal.require(Role.storefront, Role.support, Role.ops)
    return await _public(ctx, await repo.visible_order(ctx.session, ctx.principal, order_id))


@router.get(
    "/{order_id}/after-sales-options",
    response_model=OptionsPublic,
    summary="What the buyer may still ask for, per line, with deadlines",
)
async def get_options(order_id: OrderIdPath, ctx: ContextDep) -> OptionsPublic:
    ctx.principal.require(Role.storefront, Role.support)
    order = await repo.visible_order(ctx.session, ctx.principal, order_id)
    domain = await handlers.load_domain_order(ctx.session, order)
    options = policy.after_sales_options(domain, await ledger.line_history(ctx.session, order_id), ctx.now)
    return OptionsPublic(
        order_id=order_id,
        evaluated_at=ctx.now,
        options=[
            OptionPublic(
                line_id=o.line_id,
                remedy=o.remedy,
                reason=o.reason,
                eligible=o.eligible,
                deadline=o.deadline,
                rule=o.rule,
                message_zh=o.message_zh,
                message_en=o.message_en,
            )
            for o in options
        ],
    )
