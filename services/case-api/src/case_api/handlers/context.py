"""What every command runs with: the session of its transaction, who acts, and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aftersales_shared.auth import Principal
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.signing import ApprovalSigner
from sqlmodel.ext.asyncio.session import AsyncSession

SOURCE = "/case-api"


@dataclass(frozen=True)
class Context:
    session: AsyncSession
    principal: Principal  # a caller's key, or a named system actor for another service's event
    now: datetime
    calendar: BusinessCalendar
    approval_signer: ApprovalSigner  # signs the cashback approvals and cancellations a command emits
    sla_working_days: int = 2
    message_channel: str = "webhook"  # where buyer messages go (messages.py): webhook or sms
