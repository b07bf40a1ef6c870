"""Dead letters: what a topic's `<topic>.dlq` holds, and its replay to the topic once the cause is fixed.

The consumer runner parks a record it cannot handle on `<topic>.dlq`, as it was, with the headers `error`,
`consumer_group` and `original_offset`. A replay publishes it again to the topic without those headers (and
with `replayed_from`). Every group reading the topic sees it again; those that had handled it find it in
their inbox (the watcher: a scan in its parcel's history) and skip it. One replaying group (`dlq-replay`,
whichever service runs it) commits what it replayed, so a second replay sends only what was parked since
(while Kafka keeps the group's offsets: 7 days after its last use by default).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from .bus import Bus, OutRecord, Record
from .events import CloudEvent
from .logging import mask_text
from .topics import dlq

PARKING_HEADERS = frozenset({"error", "consumer_group", "original_offset", "replayed_from"})
REPLAY_GROUP = "dlq-replay"


async def _parked(bus: Bus, group: str, topic: str, wait: float, commit: bool) -> AsyncIterator[list[Record]]:
    """The records of `topic`'s DLQ not yet read by `group`, a fetch at a time, until none came for `wait`
    seconds (a new Kafka consumer takes a few seconds to be given its partitions)."""
    consumer = await bus.consumer(group, [dlq(topic)])
    try:
        while records := await consumer.fetch(max_records=500, timeout_ms=int(wait * 1000)):
            yield records
            if commit:
                await consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})
    finally:
        await consumer.close()


def describe(record: Record) -> dict[str, Any]:
    """What an operator needs to decide, with buyer data masked (an error may quote its input: phones,
    addresses, names, payee accounts)."""
    headers = {k: mask_text(v.decode(errors="replace")) for k, v in record.headers}
    try:
        event = CloudEvent.from_bytes(record.value)
        what: dict[str, Any] = {"event_id": event.id, "type": event.type, "subject": event.subject}
    except ValidationError:
        what = {"event_id": None, "bytes": len(record.value)}  # not an event: its content is not shown
    return {
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        **what,
        "consumer_group": headers.get("consumer_group"),
        "error": headers.get("error"),
    }


async def list_parked(bus: Bus, topic: str, wait: float) -> list[dict[str, Any]]:
    """Everything on the DLQ, read by a group of its own that commits nothing."""
    group = f"dlq-list-{uuid.uuid4().hex[:12]}"
    return [describe(r) async for records in _parked(bus, group, topic, wait, commit=False) for r in records]


async def replay(bus: Bus, topic: str, wait: float) -> int:
    replayed = 0
    async for records in _parked(bus, REPLAY_GROUP, topic, wait, commit=True):
        await bus.publish_batch(
            [
                OutRecord(
                    topic,
                    r.key,
                    r.value,
                    (
                        *((k, v) for k, v in r.headers if k not in PARKING_HEADERS),
                        ("replayed_from", f"{r.topic}:{r.partition}:{r.offset}".encode()),
                    ),
                )
                for r in records
            ]
        )
        replayed += len(records)
    return replayed
