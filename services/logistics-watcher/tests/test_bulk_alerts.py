"""A backlog's alerts are opened in bulk (P4's first run): each alert once, one event per alert carrying
the alert as stored, and two runs at once still open each alert once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from logistics_watcher import detectors
from logistics_watcher.domain import BIT
from logistics_watcher.models import alerts, parcels
from sqlalchemy import select
from watcher_testing import scan, watcher_on

H = timedelta(hours=1)
STALLED, LOST = 120, 30


async def test_a_backlog_opens_each_alert_once_with_its_event(db: str, tmp_path: Path) -> None:
    async with watcher_on(db, tmp_path, max_alerts_per_pass=40) as w:
        await w.send(
            *[scan("in_transit", -30 * H, tracking_no=f"SF{i:04d}") for i in range(STALLED)],
            *[scan("exception", -1 * H, tracking_no=f"EX{i:04d}") for i in range(LOST)],
        )
        sessions, settings, now = w.app.state.sessions, w.app.state.settings, w.clock.now()
        # Two runs at once (two replicas): the conditional update lets each parcel be flagged once.
        first, second = await asyncio.gather(
            detectors.run(sessions, settings, now), detectors.run(sessions, settings, now)
        )
        opened = {kind: first[kind] + second[kind] for kind in first}
        assert {k: n for k, n in opened.items() if n} == {"stalled": STALLED, "suspected_lost": LOST}
        assert await w.detect() == {}

        async with sessions() as session:
            connection = await session.connection()
            stored = [dict(r._mapping) for r in await connection.execute(select(alerts))]
            flags = dict(
                (await connection.execute(select(parcels.c.tracking_no, parcels.c.open_alerts))).all()
            )
        assert len(stored) == STALLED + LOST
        assert len({(a["tracking_no"], a["kind"]) for a in stored}) == len(stored)
        assert all(flags[a["tracking_no"]] & BIT[a["kind"]] for a in stored)

        events = await w.published("logistics.alert.opened")
        assert sorted(e.data["alert_id"] for e in events) == sorted(a["id"] for a in stored)
        assert len({e.id for e in events}) == len(events)
        by_id = {a["id"]: a for a in stored}
        for event in events:
            alert = by_id[event.data["alert_id"]]
            assert event.subject == alert["id"]
            assert (event.data["tracking_no"], event.data["kind"], event.data["status"]) == (
                alert["tracking_no"],
                alert["kind"],
                "open",
            )
            assert (event.data["order_id"], event.data["shop_id"], event.data["carrier"]) == (
                "o-1",
                "shop-a",
                "SF",
            )
