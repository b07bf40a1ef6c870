"""case-api's background loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from aftersales_shared.db import unit_of_work
from fastapi import FastAPI

from . import sms
from .reactions.logistics import escalate_overdue
from .sms import SmsProvider
from .webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


def jobs(app: FastAPI) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    async def escalate_carrier_slas() -> None:
        """R-LOST: every interval, escalate the logistics follow-ups whose carrier answer is overdue."""
        while True:
            try:
                async with unit_of_work(app.state.sessions) as session:
                    if escalated := await escalate_overdue(session, app.state.clock.now()):
                        log.info("escalated %d overdue carrier follow-ups", escalated)
            except Exception:
                log.exception("carrier SLA escalation failed; retrying next interval")
            await asyncio.sleep(app.state.settings.escalation_interval_seconds)

    async def deliver_webhooks() -> None:
        await webhook_dispatcher(app).run()

    async def send_sms() -> None:
        """R-MESSAGES: buyer messages of the SMS channel go to the provider."""
        settings = app.state.settings
        provider = SmsProvider(
            settings.sms_url, settings.sms_api_key.get_secret_value(), settings.sms_timeout_seconds
        )
        await sms.run(app.state.sessions, app.state.clock, provider, settings.sms_poll_interval_seconds)

    sms_on = app.state.settings.message_channel == "sms"
    return [escalate_carrier_slas, deliver_webhooks, *([send_sms] if sms_on else [])]


def webhook_dispatcher(app: FastAPI) -> Dispatcher:
    settings = app.state.settings
    return Dispatcher(
        app.state.sessions,
        app.state.clock,
        allow_private=settings.webhook_private_allowed,
        timeout=settings.webhook_timeout_seconds,
        poll_interval=settings.webhook_poll_interval_seconds,
        retention=timedelta(days=settings.event_retention_days),
    )
