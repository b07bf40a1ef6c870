"""Order snapshots pushed by storefronts, and their domain view for the policy engine."""

from __future__ import annotations

from datetime import datetime

from aftersales_shared.auth import Role
from aftersales_shared.clock import as_utc
from aftersales_shared.problems import conflict
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import ledger
from .. import repository as repo
from ..domain import model as dm
from ..models import Order, OrderLine
from ..schemas import OrderIn
from .context import Context


async def upsert_order(ctx: Context, order_id: str, body: OrderIn) -> tuple[Order, bool]:
    ctx.principal.require(Role.storefront)
    ctx.principal.require_shop(body.shop_id)
    order = await ctx.session.get(Order, order_id, with_for_update=True)  # grants read its lines
    created = order is None
    data = body.model_dump(exclude={"lines"})
    data["buyer"] = body.buyer.model_dump()
    data["shipment"] = body.shipment.model_dump(mode="json") if body.shipment else None
    data["buyer_id"] = body.buyer.id
    if order is None:
        order = Order(order_id=order_id, created_at=ctx.now, updated_at=ctx.now, **data)
        ctx.session.add(order)
    else:
        # Another shop's order: 404 as on GET, not a 409 that tells the caller it exists.
        ctx.principal.require_shop(order.shop_id, hide=True, what="order", ident=order_id)
        if order.shop_id != body.shop_id:
            raise conflict("order_shop_mismatch", "an order cannot move to another shop")
        await _keep_paid_above_granted(ctx, order_id, body)
        for key, value in data.items():
            setattr(order, key, value)
        order.version += 1
        order.updated_at = ctx.now
    await _replace_lines(ctx, order_id, body)
    await ctx.session.flush()
    return order, created


async def _keep_paid_above_granted(ctx: Context, order_id: str, body: OrderIn) -> None:
    """R-COMP-CAP: a new snapshot cannot pay a line less than the ledger already holds for it."""
    history = await ledger.line_history(ctx.session, order_id)
    for line in body.lines:
        held = history[line.line_id].compensated if line.line_id in history else dm.ZERO
        if line.paid_amount < held:
            raise conflict(
                "paid_below_compensated",
                f"line {line.line_id} has {held:.2f} refunded, compensated or reserved; its paid_amount "
                f"cannot go below that",
                line_id=line.line_id,
                compensated=f"{held:.2f}",
            )


async def _replace_lines(ctx: Context, order_id: str, body: OrderIn) -> None:
    existing = {line.line_id: line for line in await repo.order_lines(ctx.session, order_id)}
    used = {line["line_id"] for case in await repo.order_cases(ctx.session, order_id) for line in case.lines}
    used |= {task.line_id for task in await repo.order_cashback_tasks(ctx.session, order_id)}
    dropped = set(existing) - {line.line_id for line in body.lines}
    if dropped & used:
        raise conflict(
            "line_in_use",
            f"lines {sorted(dropped & used)} have after-sales cases or cashback tasks and must stay",
        )
    for line_id in dropped:
        await ctx.session.delete(existing[line_id])
    for position, line in enumerate(body.lines):
        row = existing.get(line.line_id) or OrderLine(
            order_id=order_id, line_id=line.line_id, position=position, **line.model_dump(exclude={"line_id"})
        )
        for key, value in line.model_dump(exclude={"line_id"}).items():
            setattr(row, key, value)
        row.position = position
        ctx.session.add(row)


def domain_order(order: Order, lines: list[OrderLine]) -> dm.Order:
    shipment = order.shipment or {}
    shipped_at = shipment.get("shipped_at")
    if shipment and shipped_at is None:
        shipped_at = order.paid_at  # a tracking number without a time still means shipped
    return dm.Order(
        order_id=order.order_id,
        shop_id=order.shop_id,
        buyer_id=order.buyer_id,
        paid_at=as_utc(order.paid_at),
        lines=tuple(
            dm.OrderLine(
                line_id=li.line_id,
                sku=li.sku,
                quantity=li.quantity,
                unit_price=li.unit_price,
                paid_amount=li.paid_amount,
                no_reason_return=li.no_reason_return,
                category=li.category,
            )
            for li in lines
        ),
        shipping_fee=order.shipping_fee,
        shipping_insurance=order.shipping_insurance,
        shipped_at=as_utc(datetime.fromisoformat(shipped_at))
        if isinstance(shipped_at, str)
        else (as_utc(shipped_at) if shipped_at else None),
        signed_at=as_utc(order.signed_at) if order.signed_at else None,
    )


async def load_domain_order(session: AsyncSession, order: Order) -> dm.Order:
    return domain_order(order, await repo.order_lines(session, order.order_id))
