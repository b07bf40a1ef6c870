"""Typed dependencies shared by case-api's routers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from aftersales_shared.fields import Instant
from aftersales_shared.web import PrincipalDep, SessionDep
from fastapi import Depends, Header, Query, Request

from ..handlers import Context


async def get_context(request: Request, session: SessionDep, principal: PrincipalDep) -> Context:
    # async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread
    state = request.app.state
    return Context(
        session=session,
        principal=principal,
        now=state.clock.now(),
        calendar=state.calendar,
        approval_signer=state.approval_signer,
        sla_working_days=state.settings.carrier_sla_working_days,
        message_channel=state.settings.message_channel,
    )


ContextDep = Annotated[Context, Depends(get_context)]


def if_match_version(if_match: Annotated[str | None, Header(alias="If-Match")] = None) -> int | None:
    """`If-Match: 3` or `If-Match: "3"` names the version the caller saw."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() else -1


IfMatchDep = Annotated[int | None, Depends(if_match_version)]
Limit = Annotated[int, "page size"]


def feed_horizon(request: Request) -> datetime:
    """The change feed shows changes up to this time (CASE_API_CHANGE_FEED_SETTLE_SECONDS ago)."""
    settle = timedelta(seconds=request.app.state.settings.change_feed_settle_seconds)
    return request.app.state.clock.now() - settle


FeedHorizonDep = Annotated[datetime, Depends(feed_horizon)]
UpdatedAfter = Annotated[
    Instant | None,
    Query(description="the change feed: what changed after this time, oldest change first (with an offset)"),
]
