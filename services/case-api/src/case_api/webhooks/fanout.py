"""From an event to its deliveries: one per active subscription of the event's shop that wants its type,
added in the transaction that records the event in case-api's inbox (so each is made once)."""

from __future__ import annotations

from typing import Any

from aftersales_shared.clock import Clock
from aftersales_shared.consumer import Handler
from aftersales_shared.events import CloudEvent
from aftersales_shared.ids import new_id
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..models import CashbackTask, Order, WebhookDelivery, WebhookSubscription


async def shop_of(session: AsyncSession, data: dict[str, Any]) -> str | None:
    """The shop an event belongs to: that of the cashback task it names, else its own `shop_id`, else that
    of its order (some alerts do not carry it). The task's first: a payout result carries no shop, and one
    given a `shop_id` it was not signed with must not reach another shop's webhooks."""
    if (task_id := data.get("cashback_task_id")) and (task := await session.get(CashbackTask, task_id)):
        return task.shop_id
    if shop_id := data.get("shop_id"):
        return str(shop_id)
    if (order_id := data.get("order_id")) and (order := await session.get(Order, order_id)):
        return order.shop_id
    return None


async def fan_out(session: AsyncSession, event: CloudEvent, clock: Clock) -> int:
    """Queue `event` for every subscription that should see it; how many."""
    shop_id = await shop_of(session, event.data)
    if shop_id is None:
        return 0
    subscriptions = await session.exec(
        select(WebhookSubscription).where(
            WebhookSubscription.shop_id == shop_id, WebhookSubscription.status == "active"
        )
    )
    wanted = [s for s in subscriptions.all() if not s.event_types or event.type in s.event_types]
    if not wanted:
        return 0
    now, body = clock.now(), event.to_bytes()
    for subscription in wanted:
        session.add(
            WebhookDelivery(
                id=new_id("msg"),
                subscription_id=subscription.id,
                event_id=event.id,
                event_type=event.type,
                payload=body,
                status="pending",
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(wanted)


def with_fan_out(clock: Clock, handler: Handler | None = None) -> Handler:
    """`handler` (a reaction, if the type has one) and then the fan-out, in the same transaction."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        if handler is not None:
            await handler(session, event)
        await fan_out(session, event, clock)

    return handle
