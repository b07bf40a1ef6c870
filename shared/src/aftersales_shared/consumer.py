"""The consumer runner every service uses: parse the envelope, dedupe by event id, call the handler,
commit the handler's transaction, then the offset.

A fetch is split by partition and the partitions are applied concurrently (on PostgreSQL), each chunk in
one transaction (inbox rows and effects together), each partition's records in offset order; the offsets
are committed once every chunk of the fetch has committed. A run of events of a type with a batch handler
goes to it at once. A service whose handlers lock shared rows (case-api's orders) takes them first, all at
once and in one order (`lock_first`), so that two partitions' transactions cannot deadlock. Events of a type
whose handler deduplicates by a key of its own (`deduplicated`: the watcher's scans, by the scan's event id,
in the history it keeps anyway) get no inbox row: the inbox would be a second index of the same fact, and
on the watcher's ingest its insert was the costliest statement (P3).

What no retry could apply is parked on `<topic>.dlq` (the error in headers) before its chunk is applied: a
record that is not a CloudEvent, and an event read from a topic other than the one its contract names (each
topic has one producer, by the Kafka ACLs, and a principal that may write one topic must not speak through
it for the producer of another: a warehouse's tracking topic carrying case events). An event a handler
refuses (`Refused`: a forgery, a scan refused on its own) is parked at once, with no retry, and the rest of
its chunk is applied again without it. If anything else in a chunk fails, the chunk is rolled back and
handled again one event at a time: failing events are retried with backoff and then parked, so the
partition moves on."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from itertools import groupby

from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from . import contracts
from .background import BackgroundLoop
from .bus import Bus, Consumer, OutRecord, Record
from .clock import Clock
from .db import unit_of_work
from .events import CloudEvent
from .logging import log_context, mask_text
from .outbox import already_processed, unseen
from .topics import dlq

log = logging.getLogger(__name__)
CONSUMER_LAG = Gauge("aftersales_consumer_lag", "records not yet consumed", ["group", "topic", "partition"])
LAG_INTERVAL = 1.0  # seconds between two reports of a runner's lag
EVENTS_HANDLED = Counter("aftersales_consumer_events_total", "events handled", ["group", "outcome"])

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]
# Takes the row locks a transaction's events will need, before any of them is handled
LockFirst = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]


class Refused(PermissionError):
    """Raised by a handler for the events it will not apply and no retry could change: not authenticated
    (a forgery), naming nothing it could answer, or refused on its own by the rules an event must meet (a
    watcher's scan in the future; not one refused only for the other events of its chunk). The transaction
    is rolled back; each is parked at once and the rest of its chunk applied again without it
    (`ConsumerRunner.handle_chunk`). `reasons`: event id → why."""

    def __init__(self, reasons: Mapping[str, str]) -> None:
        super().__init__("; ".join(reasons.values()))
        self.reasons = dict(reasons)


def _misplaced(record: Record, event: CloudEvent) -> str | None:
    """Why the event may not be taken from the record's topic: its contract names another."""
    contract = contracts.by_type(event.type)
    if contract is None or contract.topic == record.topic:
        return None
    return f"{event.type} is published on {contract.topic} only, not on {record.topic}"


def by_partition(records: Sequence[Record]) -> dict[tuple[str, int], list[Record]]:
    """A fetch's records per (topic, partition), each list in offset order."""
    lanes: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for record in records:
        lanes[(record.topic, record.partition)].append(record)
    return lanes


class ConsumerRunner(BackgroundLoop):
    def __init__(
        self,
        *,
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        group: str,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        lock_first: LockFirst | None = None,
        deduplicated: Collection[str] = (),
        max_attempts: int = 5,
        backoff: float = 0.2,
        fetch_max: int = 500,
    ) -> None:
        self._bus = bus
        self._sessions = sessions
        self._clock = clock
        self.group = group
        self._topics = list(topics)
        self._handlers = handlers
        self._batch_handlers = batch_handlers or {}
        self._lock_first = lock_first
        self._deduplicated = frozenset(deduplicated)
        self._fetch_max = fetch_max
        # The partitions of a fetch are applied concurrently, each in its own transaction; SQLite has one
        # writer (and one pooled connection), so there they take turns.
        self._parallel = sessions.kw["bind"].dialect.name != "sqlite"
        self._max_attempts = max_attempts
        self._backoff = backoff
        self.task_name = f"consumer-{group}"
        self._consumer: Consumer | None = None
        self.processed = 0
        self.dead_lettered = 0
        self.unknown = 0  # events of a type not in the contract registry, skipped
        self._lag_reported: set[tuple[str, int]] = set()
        self._lag_due = 0.0  # loop time of the next lag report

    async def run(self) -> None:
        self._consumer = consumer = await self._bus.consumer(self.group, self._topics)
        try:
            while True:
                records = await consumer.fetch(max_records=self._fetch_max, timeout_ms=200)
                if (now := asyncio.get_running_loop().time()) >= self._lag_due:
                    # At most once a LAG_INTERVAL, not per fetch: the embedded log counts the records.
                    self._lag_due = now + LAG_INTERVAL
                    await self._report_lag(consumer)
                if records:
                    lanes = by_partition(records)
                    if self._parallel:
                        await asyncio.gather(*(self.handle_chunk(lane) for lane in lanes.values()))
                    else:
                        for lane in lanes.values():
                            await self.handle_chunk(lane)
                    await consumer.commit({key: lane[-1].offset + 1 for key, lane in lanes.items()})
        finally:
            self._forget_lag(set())
            await consumer.close()

    async def _report_lag(self, consumer: Consumer) -> None:
        """The lag of the partitions this replica reads now (after a rebalance, only those)."""
        lag = await consumer.lag()
        self._forget_lag(set(lag))
        for (topic, partition), behind in lag.items():
            CONSUMER_LAG.labels(self.group, topic, str(partition)).set(behind)
        self._lag_reported = set(lag)

    def _forget_lag(self, keep: set[tuple[str, int]]) -> None:
        for topic, partition in self._lag_reported - keep:
            CONSUMER_LAG.remove(self.group, topic, str(partition))
        self._lag_reported &= keep

    def _wants(self, event: CloudEvent) -> bool:
        """Is the event for this group? Another group's type (the topic carries several) is passed over; a
        type the registry does not know (a newer producer, a stray one) is counted and logged, not parked:
        no version of this group could handle it, and the partition moves on."""
        if event.type in self._handlers or event.type in self._batch_handlers:
            return True
        if contracts.by_type(event.type) is None:
            EVENTS_HANDLED.labels(self.group, "unknown_type").inc()
            self.unknown += 1
            log.warning(
                "%s: event of an unregistered type %r skipped",
                self.group,
                event.type,
                extra={"event_id": event.id, "event_type": event.type},
            )
        return False

    async def _apply(self, session: AsyncSession, events: list[CloudEvent]) -> None:
        """Each run of same-type events to its batch handler, or one by one to its handler, in order."""
        if self._lock_first is not None and events:
            await self._lock_first(session, events)
        for event_type, run in groupby(events, key=lambda e: e.type):
            if (batch := self._batch_handlers.get(event_type)) is not None:
                await batch(session, list(run))
            else:
                for event in run:
                    with log_context(event_id=event.id, event_type=event.type):
                        await self._handlers[event_type](session, event)

    async def _unseen(self, session: AsyncSession, events: list[CloudEvent]) -> list[CloudEvent]:
        """The events to apply, in order: each the inbox has not recorded before (it records them now), and
        every event whose handler deduplicates it."""
        recorded = [e for e in events if e.type not in self._deduplicated]
        fresh = await unseen(session, self.group, recorded, self._clock.now())
        if len(recorded) == len(events):
            return fresh
        first_time = {e.id for e in fresh}
        applied = []
        for e in events:
            if e.type in self._deduplicated:
                applied.append(e)
            elif e.id in first_time:  # its first delivery in the chunk
                first_time.remove(e.id)
                applied.append(e)
        return applied

    async def handle_chunk(self, records: Sequence[Record]) -> None:
        """A fetch in one transaction; on any failure, again one record at a time. A record that no retry
        could apply (not a CloudEvent, or from a topic its contract does not name) is parked before the
        chunk is applied, and so are the events a handler refuses (`Refused`), after which the rest is
        applied again as a chunk, once: refused again (another run of events, or a handler that refuses one
        event at a time), the rest goes one record at a time. So one bad record costs its chunk nothing, and
        a flood of forgeries costs a transaction a record, never a pass a forgery."""
        read = await self._readable(records)
        for second_pass in (False, True):
            try:
                events = [e for _, e in read]
                async with unit_of_work(self._sessions) as session:
                    await self._apply(session, await self._unseen(session, events))
            except Refused as refused:
                kept = await self._park_refused(read, refused)
                if not kept:
                    return
                if len(kept) == len(read) or second_pass:  # it named none of them, or a second refusal
                    await self._one_by_one(kept)
                    return
                read = kept
                continue
            except Exception:
                await self._one_by_one(read)
                return
            self.processed += len(events)
            EVENTS_HANDLED.labels(self.group, "handled").inc(len(events))
            return

    async def _readable(self, records: Sequence[Record]) -> list[tuple[Record, CloudEvent]]:
        """Each record's event, where this group wants it; a record that no retry could apply is parked at
        once: one that is not a CloudEvent, or one read from a topic its event's contract does not name."""
        read = []
        for record in records:
            try:
                event = CloudEvent.from_bytes(record.value)
            except ValidationError as exc:
                await self._dead_letter(record, f"not a CloudEvent: {exc.errors()[:1]}")
                continue
            if not self._wants(event):
                continue
            if why := _misplaced(record, event):
                await self._dead_letter(record, f"{Refused.__name__}: {why}")
                continue
            read.append((record, event))
        return read

    async def _park_refused(
        self, read: list[tuple[Record, CloudEvent]], refused: Refused
    ) -> list[tuple[Record, CloudEvent]]:
        """Park the record of each refused event (its first delivery in the chunk, which is the one the
        inbox lets through to the handler unless its type is `deduplicated`); return the others."""
        kept = []
        for record, event in read:
            if (why := refused.reasons.pop(event.id, None)) is not None:
                await self._dead_letter(record, f"{Refused.__name__}: {why}")
            else:
                kept.append((record, event))
        return kept

    async def _one_by_one(self, read: list[tuple[Record, CloudEvent]]) -> None:
        log.warning("a chunk of %d records failed; handling them one by one", len(read), exc_info=True)
        for record, event in read:
            await self._handle_event(record, event)

    async def handle(self, record: Record) -> None:
        for read, event in await self._readable([record]):
            await self._handle_event(read, event)

    async def _handle_event(self, record: Record, event: CloudEvent) -> None:
        with log_context(event_id=event.id, event_type=event.type, topic=record.topic):
            for attempt in range(1, self._max_attempts + 1):
                try:
                    async with unit_of_work(self._sessions) as session:
                        if event.type in self._deduplicated or not await already_processed(
                            session, self.group, event.id, self._clock.now()
                        ):
                            await self._apply(session, [event])
                    self.processed += 1
                    EVENTS_HANDLED.labels(self.group, "handled").inc()
                    return
                except Exception as exc:
                    log.warning("handler failed (attempt %d/%d)", attempt, self._max_attempts, exc_info=True)
                    # Refused: no retry makes it apply (a forgery genuine), and a flood of them must not hold
                    # the partition up for the retries' backoff.
                    if attempt == self._max_attempts or isinstance(exc, Refused):
                        await self._dead_letter(record, f"{type(exc).__name__}: {exc}")
                        return
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _dead_letter(self, record: Record, error: str) -> None:
        headers = (
            *record.headers,
            ("error", mask_text(error)[:1000].encode()),  # an error may quote buyer data
            ("consumer_group", self.group.encode()),
            ("original_offset", str(record.offset).encode()),
        )
        await self._bus.publish_batch([OutRecord(dlq(record.topic), record.key, record.value, headers)])
        self.dead_lettered += 1
        EVENTS_HANDLED.labels(self.group, "dead_lettered").inc()
        log.error("event parked on %s: %s", dlq(record.topic), error, extra={"topic": record.topic})
