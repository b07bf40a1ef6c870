"""Events queued in bulk (`add_events`: a detection run's alerts, a batch of payout results) are stored as
`envelope(...).to_bytes()` would store them, one row each, and ids stay ULIDs in creation order."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from aftersales_shared import contracts
from aftersales_shared.db import insert_many, unit_of_work, unnest, update_many
from aftersales_shared.events import (
    CloudEvent,
    LogisticsAlert,
    ParcelMilestone,
    PayoutResult,
    envelope,
    envelope_bytes,
)
from aftersales_shared.ids import new_id
from aftersales_shared.money import MoneyType
from aftersales_shared.outbox import OutboxMessage, add_events
from aftersales_testing import tables_on
from sqlalchemy import Column, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.sqltypes import UTCDateTime

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


LEDGER = Table(
    "bulk_ledger",
    MetaData(),
    Column("id", String, primary_key=True),
    Column("amount", MoneyType, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("note", String),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with tables_on(request.param, tmp_path, "bulk_ledger", [LEDGER]) as sessions:
        yield sessions


async def test_insert_many_binds_each_value_as_its_column_does(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    """Money to the cent, instants in UTC, NULLs: read back as they were written (on PostgreSQL the rows go
    as one array per column, through the columns' own binding)."""
    rows = [
        {
            "id": f"r{i}",
            "amount": Decimal(f"{i}.5"),
            "at": NOW.astimezone(timezone(timedelta(hours=8))),
            "note": None if i % 2 else "x",
        }
        for i in range(200)
    ]
    async with unit_of_work(ledger) as session:
        await insert_many(session, LEDGER, rows)
    async with ledger() as session:
        stored = (
            (await (await session.connection()).execute(select(LEDGER).order_by(LEDGER.c.id)))
            .mappings()
            .all()
        )
    assert sorted(map(dict, stored), key=lambda r: r["id"]) == sorted(
        ({**r, "amount": Decimal(f"{r['amount']:.2f}"), "at": NOW} for r in rows), key=lambda r: r["id"]
    )


async def test_insert_many_refuses_a_naive_instant_and_stores_nothing(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    rows = [
        {"id": "aware", "amount": Decimal("1.00"), "at": NOW, "note": None},
        {"id": "naive", "amount": Decimal("1.00"), "at": NOW.replace(tzinfo=None), "note": None},
    ]
    with pytest.raises((StatementError, ValueError), match="timezone"):
        async with unit_of_work(ledger) as session:
            await insert_many(session, LEDGER, rows)
    async with ledger() as session:
        assert (
            await (await session.connection()).execute(select(func.count()).select_from(LEDGER))
        ).scalar_one() == 0


async def test_update_many_sets_each_row_its_values_and_the_alike_columns_to_one(
    ledger: async_sessionmaker[AsyncSession],
) -> None:
    later = NOW + timedelta(hours=1)
    rows = [{"id": f"r{i}", "amount": Decimal("1.00"), "at": NOW, "note": None} for i in range(3)]
    async with unit_of_work(ledger) as session:
        await insert_many(session, LEDGER, rows)
        changes = [
            {"id": "r0", "amount": Decimal("2.5"), "note": "a"},
            {"id": "r2", "amount": 7, "note": None},
        ]
        await update_many(session, LEDGER, changes, key="id", columns=["amount", "note"], at=later)
    async with ledger() as session:
        connection = await session.connection()
        stored = (await connection.execute(select(LEDGER).order_by(LEDGER.c.id))).all()
    assert [tuple(r) for r in stored] == [
        ("r0", Decimal("2.50"), later, "a"),
        ("r1", Decimal("1.00"), NOW, None),
        ("r2", Decimal("7.00"), later, None),
    ]


def test_unnest_binds_money_as_decimals_for_asyncpg() -> None:
    """The arrays carry what the driver's own binding would send: money as Decimal cents, never a float."""
    rows = [{"amount": Decimal("0.1")}, {"amount": 7}, {"amount": Decimal("12345678.995")}]
    _, arrays = unnest(asyncpg.dialect(), LEDGER, rows, ["amount"])
    assert arrays["amount"] == [Decimal("0.10"), Decimal("7.00"), Decimal("12345679.00")]
    assert all(type(a) is Decimal for a in arrays["amount"])


CODES = Table("bulk_codes", MetaData(), Column("id", String, primary_key=True), Column("code", String(3)))


@pytest.mark.postgres
async def test_a_text_too_long_for_its_column_is_refused_not_cut(tmp_path: Path) -> None:
    async with tables_on("postgres", tmp_path, "bulk_codes", [CODES]) as sessions:
        with pytest.raises(DBAPIError, match="too long"):
            async with unit_of_work(sessions) as session:
                await insert_many(session, CODES, [{"id": "a", "code": "abc"}, {"id": "b", "code": "abcd"}])
        async with unit_of_work(sessions) as session:
            await insert_many(session, CODES, [{"id": "a", "code": "abc"}])
        with pytest.raises(DBAPIError, match="too long"):
            async with unit_of_work(sessions) as session:
                await update_many(session, CODES, [{"id": "a", "code": "abcd"}], key="id", columns=["code"])
        async with sessions() as session:
            connection = await session.connection()
            assert (await connection.execute(select(CODES.c.code))).scalars().all() == ["abc"]
