"""Test support for logistics-watcher: a running app with a frozen clock, keys per role, event factories."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import logistics_watcher
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.clock import FrozenClock
from aftersales_shared.events import CloudEvent
from aftersales_shared.migrations import upgrade
from aftersales_shared.outbox import OutboxMessage
from aftersales_testing import RunningService, fresh_postgres_database, make_keys, serve
from logistics_watcher.config import Settings
from logistics_watcher.main import create_app
from sqlmodel import col, func, select

SERVICE_DIR = Path(logistics_watcher.__file__).parent  # alembic.ini and migrations/
NOW = datetime.fromisoformat("2026-11-05T10:00:00+08:00")
_ids = itertools.count(1)


def scan(
    status: str = "in_transit", at: datetime | timedelta = NOW, tracking_no: str = "SF1000001", **fields: Any
) -> dict[str, Any]:
    """A tracking event as a warehouse sends it; `at` may be an offset from NOW."""
    when = NOW + at if isinstance(at, timedelta) else at
    return {
        "event_id": f"evt-{next(_ids)}",
        "tracking_no": tracking_no,
        "carrier": "SF",
        "order_id": "o-1",
        "shop_id": "shop-a",
        "status": status,
        "occurred_at": when.isoformat(),
        **fields,
    }


@dataclass
class Watcher(RunningService):
    async def send(self, *events: dict[str, Any], who: str = "warehouse") -> dict[str, Any]:
        response = await self.call("POST", "/v1/tracking-events", who, json={"events": list(events)})
        assert response.status_code == 202, response.text
        return response.json()

    async def detect(self, after: timedelta | None = None) -> dict[str, int]:
        """Run the detectors (after moving the clock on by `after`); the alerts opened, per kind."""
        if after is not None:
            self.clock.advance(seconds=after.total_seconds())
        response = await self.call("POST", "/v1/scans/run", "ops")
        assert response.status_code == 200, response.text
        return {kind: n for kind, n in response.json()["opened"].items() if n}

    async def parcel(self, tracking_no: str = "SF1000001", who: str = "support") -> dict[str, Any]:
        response = await self.call("GET", f"/v1/parcels/{tracking_no}", who)
        assert response.status_code == 200, response.text
        return response.json()

    async def alerts(self, who: str = "support", **filters: Any) -> list[dict[str, Any]]:
        response = await self.call("GET", "/v1/alerts", who, params=filters)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def open_kinds(self, tracking_no: str = "SF1000001") -> list[str]:
        return sorted(a["kind"] for a in await self.alerts(tracking_no=tracking_no, status="open"))

    async def published(self, prefix: str = "logistics.") -> list[CloudEvent]:
        """The events queued in the outbox, oldest first, whose type starts with `prefix`."""
        async with self.app.state.sessions() as session:
            rows = await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))
            events = [CloudEvent.from_bytes(row.payload) for row in rows]
        return [e for e in events if e.type.startswith(prefix)]

    async def count(self, model: Any) -> int:
        async with self.app.state.sessions() as session:
            return int((await session.exec(select(func.count()).select_from(model))).one())


@asynccontextmanager
async def running_watcher(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    bus: Bus | None = None,
    background: bool = False,
    **settings: Any,
) -> AsyncIterator[Watcher]:
    """A watcher on SQLite (or the PostgreSQL database at `database_url`), the embedded bus unless
    another is given; `background=False` leaves the relay, consumer and schedule stopped."""
    if database_url is not None:
        settings.update(database_url=database_url, database_name=database_url.rsplit("/", 1)[1])
    config = Settings(data_dir=tmp_path, **settings)
    await upgrade(SERVICE_DIR, config.sqlalchemy_url)
    clock = FrozenClock(NOW)
    app = create_app(
        config, clock=clock, bus=bus or EmbeddedBus(tmp_path / "events.db"), background=background
    )
    async with serve(app) as client:
        yield Watcher(app, client, await make_keys(app, clock.now()), clock, app.state.bus)


@asynccontextmanager
async def watcher_on(db: str, tmp_path: Path, **kwargs: Any) -> AsyncIterator[Watcher]:
    """`db` is sqlite or postgres (a fresh database on TEST_DATABASE_URL's server)."""
    if db == "sqlite":
        async with running_watcher(tmp_path, **kwargs) as watcher:
            yield watcher
        return
    async with (
        fresh_postgres_database("logistics_watcher_t") as url,
        running_watcher(tmp_path, database_url=url, **kwargs) as watcher,
    ):
        yield watcher
