"""Kuaidi100's pushes (快递100 推送回调): the route Kuaidi100 posts to, and what a push does (the protocol
itself is in kuaidi100.py)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Annotated, Any

from aftersales_shared.db import unit_of_work
from aftersales_shared.problems import Problem
from fastapi import APIRouter, Form, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from . import handlers
from .config import Settings
from .kuaidi100 import RESUBSCRIBE_AFTER_ABORT, scans_of, sign
from .models import Kuaidi100Subscription

log = logging.getLogger(__name__)
OK = {"result": True, "returnCode": "200", "message": "成功"}

router = APIRouter(prefix="/v1/carriers/kuaidi100", tags=["carriers"])


def refused(status: int, code: str, detail: str) -> Problem:
    """A problem that Kuaidi100's client reads too (`result: false`), so that it pushes again."""
    return Problem(status, code, "Push refused", detail, result=False, returnCode=str(status), message=detail)


@router.post(
    "/callback",
    summary="Kuaidi100's push (快递100 推送回调)",
    response_description='{"result": true, "returnCode": "200", "message": "成功"}',
    responses={
        401: {"description": "the signature does not match / 签名错误"},
        400: {"description": "param is not a Kuaidi100 push / 不是快递100推送"},
        404: {"description": "pushes are off: LOGISTICS_WATCHER_KUAIDI100_SALT is not set / 未启用"},
    },
)
async def callback(
    request: Request,
    param: Annotated[str, Form(max_length=1_000_000, description="the push, as JSON")],
    sign_: Annotated[str, Form(alias="sign", max_length=64, description="uppercase MD5(param + salt)")],
) -> dict[str, Any]:
    """No API key: the signature with `LOGISTICS_WATCHER_KUAIDI100_SALT` is the credential. The scans of a
    subscribed number are ingested as its shop's; a number this service did not subscribe is acknowledged
    and ignored. 无需 API 密钥,以签名校验。"""
    settings: Settings = request.app.state.settings
    if settings.kuaidi100_salt is None:
        raise refused(
            404,
            "not_configured",
            "Kuaidi100 pushes are off here: LOGISTICS_WATCHER_KUAIDI100_SALT is not set",
        )
    if sign_.strip().upper() != sign(param, settings.kuaidi100_salt.get_secret_value()):
        raise refused(401, "bad_signature", "签名错误 / the signature does not match")
    try:
        push = json.loads(param)
        number = str(push["lastResult"]["nu"])
    except (ValueError, KeyError, TypeError):
        raise refused(400, "malformed_push", "param is not a Kuaidi100 push") from None
    now = request.app.state.clock.now()
    async with unit_of_work(request.app.state.sessions) as session:
        await take(session, push, number, settings, now)
    return OK


async def take(
    session: AsyncSession, push: dict[str, Any], number: str, settings: Settings, now: datetime
) -> None:
    sub = await session.get(Kuaidi100Subscription, number, with_for_update=True)
    if sub is None:
        log.warning("kuaidi100 push for a number not subscribed here: ignored", extra={"tracking_no": number})
        return
    try:
        events = scans_of(push, sub)
    except (ValueError, TypeError):
        raise refused(400, "malformed_push", "a scan's time is not a time") from None
    shops = frozenset({sub.shop_id}) if sub.shop_id else None
    result = await handlers.ingest(session, events, settings=settings, now=now, shops=shops)
    if result.rejected:
        log.warning(
            "kuaidi100 push: %d scan(s) rejected: %s",
            len(result.rejected),
            result.rejected[0].errors,
            extra={"tracking_no": number},
        )
    status = str(push.get("status", "polling"))
    if status == "shutdown":
        sub.status = "finished"
    elif status == "abort":
        corrected = push.get("comNew")
        if corrected and corrected != sub.company:
            sub.company = str(corrected)[:32]
        sub.status, sub.next_attempt_at, sub.claimed_until = "pending", now + RESUBSCRIBE_AFTER_ABORT, None
        sub.last_error = f"abort: {str(push.get('message', ''))[:150]}"
    sub.updated_at = now
    session.add(sub)
    log.info(
        "kuaidi100 push %s: %d scan(s) new",
        status,
        result.accepted,
        extra={"tracking_no": number, "carrier": sub.carrier},
    )
