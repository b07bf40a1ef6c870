"""What the watcher publishes, queued in the caller's transaction (the transactional outbox).

Findings go to logistics.alerts.v1 and milestones to logistics.parcels.v1, keyed by tracking number.
A scan can open tens of thousands of alerts at once, so rows are inserted in bulk rather than one
`add_event` at a time; the envelopes and the outbox table are the shared ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aftersales_shared import topics
from aftersales_shared.events import LogisticsAlert, ParcelMilestone, envelope
from aftersales_shared.outbox import OutboxMessage
from sqlmodel.ext.asyncio.session import AsyncSession

from .store import insert_rows

SOURCE = "/logistics-watcher"


ALERT_FIELDS = frozenset(LogisticsAlert.model_fields) - {"alert_id"}


def alert_payload(alert: dict[str, Any]) -> LogisticsAlert:
    """The event of an alerts row (the row is ours and typed already: no validation)."""
    return LogisticsAlert.model_construct(alert_id=alert["id"], **{k: alert[k] for k in ALERT_FIELDS})


async def queue_alerts(
    session: AsyncSession, change: str, alerts: Sequence[LogisticsAlert], at: datetime
) -> None:
    """`logistics.alert.<change>.v1` for each alert."""
    await _queue(
        session,
        topics.ALERTS,
        [(a.tracking_no, f"logistics.alert.{change}.v1", a.alert_id, a) for a in alerts],
        at,
    )


async def queue_milestones(
    session: AsyncSession, milestones: Sequence[ParcelMilestone], at: datetime
) -> None:
    """`logistics.parcel.<milestone>.v1` for each milestone."""
    await _queue(
        session,
        topics.PARCELS,
        [(m.tracking_no, f"logistics.parcel.{m.milestone}.v1", m.tracking_no, m) for m in milestones],
        at,
    )


Outgoing = tuple[str, str, str, LogisticsAlert | ParcelMilestone]  # key, type, subject, data


async def _queue(session: AsyncSession, topic: str, items: Sequence[Outgoing], at: datetime) -> None:
    if not items:
        return
    rows = []
    for key, event_type, subject, data in items:
        event = envelope(source=SOURCE, type=event_type, subject=subject, data=data, at=at)
        rows.append(
            {"event_id": event.id, "topic": topic, "key": key, "payload": event.to_bytes(), "created_at": at}
        )
    await insert_rows(session, OutboxMessage.__table__, rows)
    session.info["outbox_dirty"] = True  # wakes the relay after the commit, as add_event does
