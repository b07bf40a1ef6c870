"""What case-api does with the events other services publish: one module per source service."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from aftersales_shared.auth import Principal
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import as_utc
from aftersales_shared.signing import ApprovalSigner
from sqlmodel.ext.asyncio.session import AsyncSession

from .. import handlers
from ..config import Settings


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
