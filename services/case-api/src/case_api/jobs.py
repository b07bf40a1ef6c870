"""case-api's background loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from aftersales_shared.db import unit_of_work
from fastapi import FastAPI

from .reactions.logistics import escalate_overdue
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

    return [escalate_carrier_slas, deliver_webhooks]


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
