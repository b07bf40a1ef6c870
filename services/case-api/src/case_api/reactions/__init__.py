"""What case-api does with the events other services publish: one module per source service."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from aftersales_shared.auth import Principal
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import as_utc
from aftersales_shared.events import CloudEvent
from aftersales_shared.signing import ApprovalSigner
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers, ledger
from ..config import Settings
from ..models import Order


@cache
def _settings() -> Settings:
    return Settings()


@cache
def _calendar() -> BusinessCalendar:
    return _settings().business_calendar()


@cache
def _signer() -> ApprovalSigner:
    return _settings().signer()  # reads its key only if a reaction approves cashback


def system_context(session: AsyncSession, at: datetime, principal: Principal) -> handlers.Context:
    """A handlers context for a change another service's event causes, with the configured calendar."""
    return handlers.Context(
        session=session,
        principal=principal,
        now=as_utc(at),
        calendar=_calendar(),
        approval_signer=_signer(),
        sla_working_days=_settings().carrier_sla_working_days,
        message_channel=_settings().message_channel,
    )


async def lock_orders_first(session: AsyncSession, events: list[CloudEvent]) -> None:
    """The order locks a transaction of consumed events needs, all at once and in id order, before any of
    its events is handled (the consumer runner's `lock_first`). The events of one order arrive on several
    partitions (payout results are keyed by cashback task, parcel events by tracking number), which are
    applied concurrently; each reaction locks its order first, but a transaction of several events would
    otherwise take them in the order they came, and two such could wait for each other (a deadlock)."""
    named = {str(e.data["order_id"]) for e in events if e.data.get("order_id")}
    if not named:
        return
    known = await session.exec(select(Order.order_id).where(col(Order.order_id).in_(named)))
    await ledger.lock_orders(session, None, *known.all())  # an unknown order is the handler's to log
