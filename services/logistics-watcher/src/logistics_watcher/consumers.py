"""The watcher's consumer group (tracking scans, case-api's intercept requests and cases) and its
scheduled detection run."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from aftersales_shared import contracts, topics
from aftersales_shared.clock import Clock
from aftersales_shared.consumer import BatchHandler, ConsumerRunner, Handler, Refused
from aftersales_shared.events import CaseEvent, CloudEvent
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from . import detectors, handlers, kuaidi100
from .config import Settings

log = logging.getLogger(__name__)
# A scan is applied once by its own event id: `handlers.ingest` adds it to the parcel's history only if the
# history lacks it, so the runner keeps no inbox row for it (ConsumerRunner's `deduplicated`).
DEDUPLICATED = frozenset({contracts.TRACKING_SCAN.type})


def event_handlers(settings: Settings, clock: Clock) -> tuple[dict[str, Handler], dict[str, BatchHandler]]:
    """(handlers, batch handlers). Scans come in bulk and are applied a fetch at a time. A fetch holding a
    scan the watcher refuses (as its API would: an unknown status, a time in the future, another shop's
    parcel) is applied again one scan at a time, since a scan may be refused for another in its fetch (a
    shipment scanned later in it); a scan refused on its own is `Refused`, parked at once with its
    reasons, without retries."""

    async def on_scans(session: AsyncSession, events: list[CloudEvent]) -> None:
        result = await handlers.ingest(session, [e.data for e in events], settings=settings, now=clock.now())
        if not result.rejected:
            return
        if len(events) > 1:
            raise ValueError(f"{len(result.rejected)} of {len(events)} scans refused: each is checked alone")
        raise Refused({events[0].id: json.dumps(result.rejected[0].errors, ensure_ascii=False)})

    async def on_intercept_requested(session: AsyncSession, event: CloudEvent) -> None:
        case = CaseEvent.model_validate(event.data)
        await handlers.request_intercept(
            session, case_id=case.case_id, order_id=case.order_id, shop_id=case.shop_id, now=clock.now()
        )

    async def on_case_opened(session: AsyncSession, event: CloudEvent) -> None:
        case = CaseEvent.model_validate(event.data)
        if case.reason == "false_delivery":  # the customer reports non-receipt of a signed-for parcel
            await handlers.report_non_receipt(session, order_id=case.order_id, now=clock.now())

    return (
        {
            contracts.CASE_INTERCEPT_REQUESTED.type: on_intercept_requested,
            contracts.CASE_OPENED.type: on_case_opened,
        },
        {contracts.TRACKING_SCAN.type: on_scans},
    )


def consumers(app: FastAPI) -> list[ConsumerRunner]:
    settings: Settings = app.state.settings
    state = app.state
    single, batch = event_handlers(settings, state.clock)
    return [
        ConsumerRunner(
            bus=state.bus,
            sessions=state.sessions,
            clock=state.clock,
            group=settings.consumer_group,
            topics=[topics.TRACKING, topics.CASES],
            handlers=single,
            batch_handlers=batch,
            deduplicated=DEDUPLICATED,
            fetch_max=settings.ingest_batch_size,
        )
    ]


def jobs(app: FastAPI) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    settings: Settings = app.state.settings

    async def detection_schedule() -> None:
        while True:
            await asyncio.sleep(settings.scan_interval_seconds)
            try:
                opened = await detectors.run(app.state.sessions, settings, app.state.clock.now())
                if any(opened.values()):
                    log.info("detectors opened alerts: %s", opened)
            except Exception:
                log.exception("detection run failed; it runs again at the next interval")

    async def kuaidi100_subscriptions() -> None:
        async with httpx.AsyncClient() as client:
            while True:
                await asyncio.sleep(settings.kuaidi100_interval_seconds)
                try:
                    await kuaidi100.subscribe_due(app.state.sessions, settings, client, app.state.clock.now())
                except Exception:
                    log.exception("kuaidi100 subscriptions failed; the rows stay due for the next round")

    return [detection_schedule] + ([kuaidi100_subscriptions] if settings.kuaidi100_key is not None else [])
