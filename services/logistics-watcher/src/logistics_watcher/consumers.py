"""The watcher's consumer group and its scheduled detection run.

Tracking scans (logistics.tracking.v1) are applied a fetch at a time, a transaction per lane of
partitions: the scans table deduplicates by event id, so a redelivered batch changes nothing, and one
transaction per record (the shared ConsumerRunner) is far below P3. case-api's intercept requests and
cases (aftersales.cases.v1) go through ConsumerRunner.handle one at a time, as does any batch that
fails, and any scan that cannot be applied (retries, then the DLQ).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from aftersales_shared import topics
from aftersales_shared.bus import Bus, Record
from aftersales_shared.clock import Clock
from aftersales_shared.consumer import ConsumerRunner, Handler
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import CaseEvent, CloudEvent
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from . import detectors, handlers
from .config import Settings

log = logging.getLogger(__name__)
SCAN = "logistics.tracking.scan.v1"
INTERCEPT_REQUESTED = "aftersales.case.intercept_requested.v1"
CASE_OPENED = "aftersales.case.opened.v1"

# Given a transaction and the events of a fetch, apply them; return the positions of those rejected.
BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[list[int]]]


def event_handlers(settings: Settings, clock: Clock) -> dict[str, Handler]:
    async def on_scan(session: AsyncSession, event: CloudEvent) -> None:
        result = await handlers.ingest(session, [event.data], settings=settings, now=clock.now())
        if result.rejected:
            raise handlers.RejectedEvent(json.dumps(result.rejected[0].errors, ensure_ascii=False))

    async def on_intercept_requested(session: AsyncSession, event: CloudEvent) -> None:
        case = CaseEvent.model_validate(event.data)
        await handlers.request_intercept(session, case_id=case.case_id, order_id=case.order_id,
                                         now=clock.now())

    async def on_case_opened(session: AsyncSession, event: CloudEvent) -> None:
        case = CaseEvent.model_validate(event.data)
        if case.reason == "false_delivery":  # the customer reports non-receipt of a signed-for parcel
            await handlers.report_non_receipt(session, order_id=case.order_id, now=clock.now())

    return {SCAN: on_scan, INTERCEPT_REQUESTED: on_intercept_requested, CASE_OPENED: on_case_opened}


def scan_batch_handler(settings: Settings, clock: Clock) -> BatchHandler:
    async def on_scans(session: AsyncSession, events: list[CloudEvent]) -> list[int]:
        result = await handlers.ingest(session, [e.data for e in events], settings=settings, now=clock.now())
        return [r.index for r in result.rejected]

    return on_scans


class BatchConsumerRunner(ConsumerRunner):
    """A ConsumerRunner that applies the events of `batch_types` a fetch at a time. The fetch is split by
    partition into `lanes`, each applied in a transaction of its own, concurrently: a key (a tracking
    number) lives in one partition, so lanes touch different rows, and the database works on one lane
    while Python prepares the next."""

    def __init__(self, *, bus: Bus, sessions: async_sessionmaker[AsyncSession], clock: Clock, group: str,
                 topics: Sequence[str], handlers: Mapping[str, Handler], batch_types: frozenset[str],
                 batch_handler: BatchHandler, max_records: int = 2000, lanes: int = 1) -> None:
        super().__init__(bus=bus, sessions=sessions, clock=clock, group=group, topics=topics,
                         handlers=handlers)
        self._source, self._subscribed, self._unit_sessions = bus, list(topics), sessions
        self._batch_types, self._batch_handler = batch_types, batch_handler
        self._max_records, self._lanes = max_records, lanes

    async def run(self) -> None:
        consumer = await self._source.consumer(self.group, self._subscribed)
        try:
            while True:
                records = await consumer.fetch(max_records=self._max_records, timeout_ms=200)
                if records:
                    await self.handle_batch(records)
                    await consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})
        finally:
            await consumer.close()

    async def handle_batch(self, records: list[Record]) -> None:
        lanes: dict[int, list[tuple[Record, CloudEvent]]] = defaultdict(list)
        one_by_one: list[Record] = []
        for record in records:
            try:
                event = CloudEvent.from_bytes(record.value)
            except ValidationError:
                one_by_one.append(record)  # handle() parks it on the DLQ
                continue
            if event.type in self._batch_types:
                lanes[hash((record.topic, record.partition)) % self._lanes].append((record, event))
            else:
                one_by_one.append(record)
        for left in await asyncio.gather(*(self._apply(lane) for lane in lanes.values())):
            one_by_one += left
        for record in sorted(one_by_one, key=lambda r: (r.topic, r.partition, r.offset)):
            await self.handle(record)

    async def _apply(self, lane: list[tuple[Record, CloudEvent]]) -> list[Record]:
        """Apply a lane in one transaction; return what is left to handle record by record."""
        try:
            async with unit_of_work(self._unit_sessions) as session:
                rejected = await self._batch_handler(session, [event for _, event in lane])
        except Exception:
            log.warning("batch of %d failed; handling it record by record", len(lane), exc_info=True)
            return [record for record, _ in lane]
        self.processed += len(lane) - len(rejected)
        return [lane[i][0] for i in rejected]


def consumers(app: FastAPI) -> list[ConsumerRunner]:
    settings: Settings = app.state.settings
    state = app.state
    return [BatchConsumerRunner(bus=state.bus, sessions=state.sessions, clock=state.clock,
                                group=settings.consumer_group,
                                topics=[topics.TRACKING, topics.CASES],
                                handlers=event_handlers(settings, state.clock), batch_types=frozenset({SCAN}),
                                batch_handler=scan_batch_handler(settings, state.clock),
                                max_records=settings.ingest_batch_size, lanes=settings.ingest_lanes)]


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

    return [detection_schedule]
