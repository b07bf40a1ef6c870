"""case-api's background loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aftersales_shared.db import unit_of_work
from fastapi import FastAPI

from .reactions.logistics import escalate_overdue

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

    return [escalate_carrier_slas]
