"""The detectors: set-based SQL over the parcels' index, run on a schedule and on demand.

Each rule is a predicate on a parcel's status, the time of its latest scan and its carrier's threshold
(or its false-delivery score), plus "no alert of this kind open" (a bit in `open_alerts`). All of it
is in one index, so a run reads index ranges, never every parcel. The parcels a rule matches get an
alert and an event on logistics.alerts.v1. Alerts resolve on ingest, when the parcel moves again
(handlers.ingest).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from aftersales_shared.db import insert_many, unit_of_work
from aftersales_shared.ids import new_id
from aftersales_shared.metrics import CountBy
from prometheus_client import Gauge
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from .config import Settings
from .domain import BIT, CARRIER_TROUBLE, KINDS, MOVING, NOT_PICKED_UP
from .models import alerts, parcels
from .outgoing import alert_payload, queue_alerts
from .sql import dialect_name, execute

P = parcels.c
PASSES_AT_ONCE = 2  # over a backlog of alerts to open


@dataclass(frozen=True)
class Rule:
    kind: str
    predicate: ColumnElement[bool]


def overdue(settings: Settings, now: datetime, threshold: str) -> ColumnElement[bool]:
    """The latest scan is more than the carrier's threshold old (23 h 59 m is not more than 24 h)."""
    default = now - getattr(settings.thresholds, threshold)
    special = {
        carrier: now - getattr(settings.thresholds_for(carrier), threshold)
        for carrier in settings.carrier_thresholds
    }
    if not special:
        return P.last_event_at < default
    others = and_(P.carrier.not_in(list(special)), P.last_event_at < default)
    by_carrier = [and_(P.carrier == carrier, P.last_event_at < cutoff) for carrier, cutoff in special.items()]
    # The bound on the index's second column keeps the OR from reading the whole status range.
    return and_(P.last_event_at < max(default, *special.values()), or_(others, *by_carrier))


def rules(settings: Settings, now: datetime) -> list[Rule]:
    return [
        # R-NO-UPDATE: shipped (a label, a warehouse scan) but the carrier never scanned it.
        Rule("no_first_scan", and_(P.status.in_(NOT_PICKED_UP), overdue(settings, now, "no_first_scan"))),
        # R-NO-UPDATE: on its way, and no scan for more than a day.
        Rule("stalled", and_(P.status.in_(MOVING), overdue(settings, now, "stalled"))),
        # R-LOST: no scan for much longer, or the carrier itself says lost / 疑难.
        Rule("suspected_lost", and_(P.status.in_(MOVING), overdue(settings, now, "suspected_lost"))),
        Rule("suspected_lost", P.status.in_(CARRIER_TROUBLE)),
        # R-FALSE-DELIVERY: signed by someone else, or with no out-for-delivery scan (scored on ingest).
        Rule("suspected_false_delivery", P.false_delivery_score.is_not(None)),
    ]


async def run(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> dict[str, int]:
    """Open the alerts the parcels call for; per kind, how many. A backlog is worked off in passes of at
    most `max_alerts_per_pass` alerts, each its own transaction (on PostgreSQL, PASSES_AT_ONCE at a time),
    so that none holds many parcels locked for long. Replicas may run at once: a parcel is flagged by one
    conditional update, and at most one alert per parcel and kind is open."""
    opened: dict[str, int] = dict.fromkeys(KINDS, 0)
    limit = settings.max_alerts_per_pass

    async def passes(rule: Rule) -> None:
        """Passes of `limit` until one finds fewer (the other passes hold the rest, or none is left)."""
        count = limit
        while count == limit:
            async with unit_of_work(sessions) as session:
                count = await open_alerts(session, rule, now, limit)
            opened[rule.kind] += count

    async with sessions() as session:  # SQLite writes one transaction at a time anyway
        at_once = PASSES_AT_ONCE if dialect_name(session) == "postgresql" else 1
    for rule in rules(settings, now):
        progress = True
        while progress and (left := await _waiting(sessions, rule)) > 0:
            before = opened[rule.kind]
            if left <= limit:
                async with unit_of_work(sessions) as session:
                    opened[rule.kind] += await open_alerts(session, rule, now, None)
            else:
                # A backlog: on PostgreSQL PASSES_AT_ONCE passes at a time, as replicas would run them
                # (each locks its own parcels): one pass's rows are built here while another's are written.
                async with asyncio.TaskGroup() as group:  # one failing cancels the others
                    for _ in range(min(at_once, -(-left // limit))):
                        group.create_task(passes(rule))
            # A pass that skipped parcels another one held ends early: count again. None opened means
            # another replica holds what is left, and opens it.
            progress = opened[rule.kind] > before
    return opened


async def _waiting(sessions: async_sessionmaker[AsyncSession], rule: Rule) -> int:
    async with sessions() as session:
        return await waiting(session, rule)


def _needs_alert(rule: Rule) -> ColumnElement[bool]:
    return and_(rule.predicate, P.open_alerts.op("&")(BIT[rule.kind]) == 0)


async def waiting(session: AsyncSession, rule: Rule) -> int:
    """How many parcels the rule matches that have no alert of its kind open: usually none, and read
    from the index alone."""
    return int((await execute(session, select(func.count()).where(_needs_alert(rule)))).scalar_one())


async def open_alerts(session: AsyncSession, rule: Rule, now: datetime, limit: int | None) -> int:
    """Flag (up to `limit`) parcels the rule matches, open their alerts, queue the events."""
    bit = BIT[rule.kind]
    needs_alert = _needs_alert(rule)
    if limit is not None:
        first = select(P.tracking_no).where(needs_alert).limit(limit).with_for_update(skip_locked=True)
        needs_alert = and_(needs_alert, P.tracking_no.in_(first))
    # The update re-checks the predicate on locked rows, so a parcel that just moved is left alone.
    flagged = (
        await execute(
            session,
            update(parcels)
            .where(needs_alert)
            .values(open_alerts=P.open_alerts.op("|")(bit))
            .returning(
                P.tracking_no,
                P.order_id,
                P.shop_id,
                P.carrier,
                P.direction,
                P.last_event_at,
                P.false_delivery_score,
            ),
        )
    ).all()
    rows = [
        {
            "id": new_id("alr"),
            "tracking_no": p.tracking_no,
            "order_id": p.order_id,
            "shop_id": p.shop_id,
            "carrier": p.carrier,
            "direction": p.direction,
            "kind": rule.kind,
            "status": "open",
            "score": p.false_delivery_score if rule.kind == "suspected_false_delivery" else None,
            "last_event_at": p.last_event_at,
            "opened_at": now,
            "resolved_at": None,
            "confirmed_at": None,
        }
        for p in flagged
    ]
    if rows:
        await insert_many(session, alerts, rows)
        await queue_alerts(session, "opened", [alert_payload(row) for row in rows], now)
    return len(rows)


# Open alerts per kind: the scan's answer, and a gauge on /metrics.
OPEN_ALERTS = CountBy(
    Gauge("aftersales_open_alerts_by_kind", "open alerts by kind", ["kind"]),
    alerts.c.kind,
    KINDS,
    [alerts.c.status == "open"],
)
