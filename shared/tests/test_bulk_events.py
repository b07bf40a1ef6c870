"""Events queued in bulk (`add_events`: a detection run's alerts, a batch of payout results) are stored as
`envelope(...).to_bytes()` would store them, one row each, and ids stay ULIDs in creation order."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aftersales_shared import contracts
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import (
    CloudEvent,
    LogisticsAlert,
    ParcelMilestone,
    PayoutResult,
    envelope,
    envelope_bytes,
)
from aftersales_shared.ids import new_id
from aftersales_shared.outbox import OutboxMessage, add_events
from aftersales_testing import tables_on
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ALERT = LogisticsAlert(
    alert_id="alr_1",
    tracking_no="SF1",
    order_id="o-1",
    carrier="SF",
    kind="stalled",
    status="open",
    opened_at=NOW,
    score=0.4,
    shop_id="shop-a",
    direction="outbound",
    last_event_at=NOW,
)
PAYLOADS = [
    ALERT,
    ParcelMilestone.model_construct(
        tracking_no="SF1",
        order_id=None,
        carrier="SF",
        direction="outbound",
        milestone="delivered",
        occurred_at=NOW,
        signed_by="locker",
        shop_id="shop-a",
    ),
    PayoutResult(
        payout_id="pay_1",
        cashback_task_id="cbt_1",
        order_id="o-1",
        amount=Decimal("12.30"),
        status="paid",
        out_biz_no="pay_1",
        paid_at=NOW,
    ),
]


@pytest.mark.parametrize("data", PAYLOADS, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("subject", ["SF1", None])
def test_the_bulk_envelope_is_the_envelope(data: object, subject: str | None) -> None:
    expected = envelope(source="/w", type="t.v1", subject=subject, data=data, at=NOW)  # type: ignore[arg-type]
    stored = envelope_bytes(id=expected.id, source="/w", type="t.v1", subject=subject, data=data, at=NOW)  # type: ignore[arg-type]
    assert stored == expected.to_bytes()
    assert CloudEvent.from_bytes(stored) == expected


def test_ids_are_ulids_in_creation_order() -> None:
    ids = []
    for _ in range(3):
        ids += [new_id("evt") for _ in range(500)]
        time.sleep(0.002)
    assert all(re.fullmatch(r"evt_[0-9a-hjkmnp-tv-z]{26}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [i[:14] for i in ids] == sorted(i[:14] for i in ids)  # the time part never goes back
    assert ids[0][4:14] <= new_id("x")[2:12]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with tables_on(request.param, tmp_path, "bulk_events", [OutboxMessage.__table__]) as sessions:  # type: ignore[attr-defined]
        yield sessions


async def test_add_events_stores_one_row_per_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    alerts = [ALERT.model_copy(update={"alert_id": f"alr_{i}", "tracking_no": f"SF{i}"}) for i in range(300)]
    async with unit_of_work(sessions) as session:
        await add_events(
            session, source="/w", events=[(contracts.ALERT_OPENED, a.alert_id, a) for a in alerts], at=NOW
        )
        assert session.info["outbox_dirty"]
    async with sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    assert [r.key for r in rows] == [a.tracking_no for a in alerts]
    assert {r.topic for r in rows} == {contracts.ALERT_OPENED.topic}
    assert all(r.sent_at is None and r.created_at.replace(tzinfo=UTC) == NOW for r in rows)
    events = [CloudEvent.from_bytes(r.payload) for r in rows]
    assert [e.id for e in events] == [r.event_id for r in rows]
    assert len({e.id for e in events}) == len(alerts)
    assert [LogisticsAlert.model_validate(e.data) for e in events] == alerts
    assert {(e.type, e.source) for e in events} == {(contracts.ALERT_OPENED.type, "/w")}
