"""payout-worker's consumer group on aftersales.cashback.v1.

Approvals arrive in bursts (a support shift approving a day's cashback), so a fetched chunk is applied in
one transaction: inbox rows and ledger entries together, one query to find what is known already. If the
chunk fails, it is handled again one event at a time by the shared runner (retries, then the DLQ).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import time

from aftersales_shared import topics
from aftersales_shared.bus import Bus, Record
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import Clock
from aftersales_shared.consumer import CONSUMER_LAG, ConsumerRunner, Handler
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import CashbackApproved, CloudEvent
from aftersales_shared.outbox import InboxEntry
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .handlers import APPROVED, open_payouts
from .repository import insert_rows

log = logging.getLogger(__name__)


class LedgerConsumer(ConsumerRunner):
    def __init__(
        self,
        *,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        group: str,
        handlers: dict[str, Handler],
        calendar: BusinessCalendar,
        cutoff: time,
        new_id: Callable[[], str],
    ) -> None:
        super().__init__(
            bus=bus, sessions=sessions, clock=clock, group=group, topics=[topics.CASHBACK], handlers=handlers
        )
        self.bus, self.sessions, self.clock, self.handlers = bus, sessions, clock, handlers
        self.calendar, self.cutoff, self.new_id = calendar, cutoff, new_id

    async def run(self) -> None:
        consumer = await self.bus.consumer(self.group, [topics.CASHBACK])
        try:
            while True:
                records = await consumer.fetch(max_records=1000, timeout_ms=200)
                for (topic, partition), behind in (await consumer.lag()).items():
                    CONSUMER_LAG.labels(self.group, topic, str(partition)).set(behind)
                if records:
                    await self.handle_chunk(records)
                    await consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})
        finally:
            await consumer.close()

    async def handle_chunk(self, records: Sequence[Record]) -> None:
        try:
            events = [CloudEvent.from_bytes(r.value) for r in records]
            async with unit_of_work(self.sessions) as session:
                await self._apply(session, [e for e in events if e.type in self.handlers])
            self.processed += len(records)
        except Exception:
            log.warning("chunk of %d events failed; handling them one by one", len(records), exc_info=True)
            for record in records:
                await self.handle(record)

    async def _apply(self, session: AsyncSession, events: list[CloudEvent]) -> None:
        known = set(
            (
                await session.exec(
                    select(InboxEntry.event_id).where(
                        InboxEntry.consumer_group == self.group,
                        col(InboxEntry.event_id).in_([e.id for e in events]),
                    )
                )
            ).all()
        )
        fresh = list({e.id: e for e in events if e.id not in known}.values())
        now = self.clock.now()
        await insert_rows(
            session,
            InboxEntry,
            [{"consumer_group": self.group, "event_id": e.id, "processed_at": now} for e in fresh],
        )
        run: list[CloudEvent] = []
        for event in fresh:  # in order: a run of approvals at once, anything else through its handler
            if event.type == APPROVED:
                run.append(event)
                continue
            await self._approve(session, run)
            run = []
            await self.handlers[event.type](session, event)
        await self._approve(session, run)

    async def _approve(self, session: AsyncSession, events: list[CloudEvent]) -> None:
        if events:
            await open_payouts(
                session,
                [CashbackApproved.model_validate(e.data) for e in events],
                new_id=self.new_id,
                calendar=self.calendar,
                cutoff=self.cutoff,
                clock=self.clock,
            )
