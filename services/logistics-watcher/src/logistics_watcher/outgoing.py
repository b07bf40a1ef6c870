"""What the watcher publishes, queued in the caller's transaction (the transactional outbox).

Findings go to logistics.alerts.v1 and milestones to logistics.parcels.v1, keyed by tracking number.
A scan can open tens of thousands of alerts at once, so they are queued in bulk (`add_events`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aftersales_shared import contracts
from aftersales_shared.db import log_on_commit
from aftersales_shared.events import LogisticsAlert, ParcelMilestone
from aftersales_shared.outbox import add_events
from sqlmodel.ext.asyncio.session import AsyncSession

SOURCE = "/logistics-watcher"
log = logging.getLogger(__name__)


ALERT_FIELDS = tuple(LogisticsAlert.model_fields)  # the event's fields, in its order


def alert_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The event of an alerts row, as LogisticsAlert's fields (the row is ours and typed already: neither
    validated nor made a model, as a detection run may queue a hundred thousand)."""
    return {name: alert["id" if name == "alert_id" else name] for name in ALERT_FIELDS}


async def queue_alerts(
    session: AsyncSession, change: str, alerts: Sequence[dict[str, Any]], at: datetime
) -> None:
    """`logistics.alert.<change>.v1` for each alert payload (logged by the pass that found them, as a
    count: one pass may open tens of thousands)."""
    contract = contracts.ALERT_EVENTS[change]
    await add_events(session, source=SOURCE, events=[(contract, a["alert_id"], a) for a in alerts], at=at)


async def queue_milestones(
    session: AsyncSession, milestones: Sequence[ParcelMilestone], at: datetime
) -> None:
    """`logistics.parcel.<milestone>.v1` for each milestone."""
    for m in milestones:
        log_on_commit(
            session,
            log,
            "parcel %s",
            m.milestone,
            tracking_no=m.tracking_no,
            order_id=m.order_id,
            shop_id=m.shop_id,
        )
    events = [(contracts.PARCEL_EVENTS[m.milestone], m.tracking_no, m) for m in milestones]
    await add_events(session, source=SOURCE, events=events, at=at)
