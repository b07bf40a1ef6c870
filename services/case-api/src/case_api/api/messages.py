"""What the buyer was told or will be told, per case (R-MESSAGES). 给买家的消息。"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aftersales_shared.auth import Role
from aftersales_shared.clock import as_utc
from aftersales_shared.fields import ResourceIdPath
from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel

from .. import messages
from .. import repository as repo
from .deps import ContextDep

router = APIRouter(prefix="/v1/cases", tags=["cases"])
Utc = Annotated[datetime, AfterValidator(as_utc)]


class MessagePublic(BaseModel):
    id: str
    case_id: str | None
    order_id: str
    cashback_task_id: str | None
    template: str
    channel: Literal["webhook", "sms"]
    status: Literal["queued", "sending", "sent", "failed"]
    message_zh: str
    message_en: str
    facts: dict[str, Any]
    attempts: int
    next_attempt_at: Utc | None
    error: str | None
    created_at: Utc
    sent_at: Utc | None


class MessageList(BaseModel):
    items: list[MessagePublic]


@router.get("/{case_id}/messages", response_model=MessageList, summary="The case's messages to the buyer")
async def case_messages(case_id: ResourceIdPath, ctx: ContextDep) -> dict[str, Any]:
    """Template, channel, the zh and en text, and status: `queued` (handed to the storefront's webhook,
    or waiting for the SMS provider; after a try the provider did not take, `error` says why and
    `next_attempt_at` when it is tried again), `sending`, `sent` (the SMS provider took it), `failed` (and
    why)."""
    ctx.principal.require(Role.storefront, Role.support, Role.ops)
    case = await repo.get_case(ctx.session, ctx.principal, case_id)
    found = await messages.of_case(ctx.session, case.id)
    return {"items": [MessagePublic.model_validate(m, from_attributes=True) for m in found]}
