"""The webhook endpoints' queries."""

from __future__ import annotations

from aftersales_shared.auth import Principal
from aftersales_shared.pagination import decode_cursor
from aftersales_shared.problems import not_found
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..models import WebhookDelivery, WebhookSubscription
from ..repository import page, visible


async def get_subscription(
    session: AsyncSession, principal: Principal, subscription_id: str, *, for_update: bool = False
) -> WebhookSubscription:
    return await visible(
        session, principal, WebhookSubscription, subscription_id, "webhook", for_update=for_update
    )


async def subscriptions(
    session: AsyncSession, principal: Principal, cursor: str | None, limit: int
) -> list[WebhookSubscription]:
    return await page(
        session,
        WebhookSubscription,
        WebhookSubscription.id,
        principal,
        WebhookSubscription.shop_id,
        [],
        cursor,
        limit,
    )


async def deliveries(
    session: AsyncSession, subscription_id: str, status: str | None, cursor: str | None, limit: int
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(col(WebhookDelivery.id) < after)
    return list((await session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit + 1))).all())


async def get_delivery(
    session: AsyncSession, subscription_id: str, delivery_id: str, *, for_update: bool = False
) -> WebhookDelivery:
    query = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    delivery = (await session.exec(query)).first()
    if delivery is None:
        raise not_found("delivery", delivery_id)
    return delivery
