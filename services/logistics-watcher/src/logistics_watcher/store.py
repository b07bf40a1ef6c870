"""Bulk reads and writes, a batch at a time (ingest, and alerts and their events from the detectors).

On PostgreSQL each is one statement that takes whole columns as arrays (`aftersales_shared.db.unnest`): a
batch of thousands of rows costs SQLAlchemy and the driver no per-row work (P3). SQLite, the embedded
default, gets the same writes row by row (executemany).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from aftersales_shared.db import unnest
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import intercept_requests, parcels, scans
from .sql import dialect_name, execute

P = parcels.c
LOCKED = [c.name for c in parcels.columns if c.name not in ("created_at", "updated_at")]


def _on_postgres(session: AsyncSession) -> bool:
    return dialect_name(session) == "postgresql"


async def lock_parcels(session: AsyncSession, tracking_nos: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The parcels' rows, locked, in key order (so that concurrent batches lock in the same order); all but
    their times of creation and last change, which an ingest never reads."""
    keys = sorted(tracking_nos)
    if not keys:
        return {}
    if _on_postgres(session):
        query: Any = text(
            f"SELECT {', '.join(LOCKED)} FROM parcels WHERE tracking_no = ANY(CAST(:keys AS text[])) "
            "ORDER BY tracking_no FOR UPDATE"
        )
        found = await execute(session, query, {"keys": keys})
    else:
        query = select(*(P[c] for c in LOCKED)).where(P.tracking_no.in_(keys)).order_by(P.tracking_no)
        found = await execute(session, query)
    names = list(found.keys())
    locked = (dict(zip(names, row, strict=True)) for row in found)
    return {row["tracking_no"]: row for row in locked}


async def order_shops(session: AsyncSession, order_ids: Iterable[str]) -> dict[str, str]:
    """The shop of each of these orders that case-api asked to intercept (the request names it)."""
    keys = sorted(order_ids)
    if not keys:
        return {}
    i = intercept_requests.c
    if _on_postgres(session):
        query: Any = text(
            "SELECT DISTINCT order_id, shop_id FROM intercept_requests "
            "WHERE order_id = ANY(CAST(:keys AS text[])) AND shop_id IS NOT NULL"
        )
        found = await execute(session, query, {"keys": keys})
    else:
        query = select(i.order_id, i.shop_id).distinct().where(i.order_id.in_(keys), i.shop_id.is_not(None))
        found = await execute(session, query)
    return {row.order_id: row.shop_id for row in found}


async def recorded(session: AsyncSession, event_ids: Iterable[str]) -> set[str]:
    """Which of these events are in a parcel's history already."""
    keys = sorted(event_ids)
    if not keys:
        return set()
    return set((await execute(session, select(scans.c.event_id).where(scans.c.event_id.in_(keys)))).scalars())


async def add_scans(session: AsyncSession, rows: Sequence[dict[str, Any]], received_at: datetime) -> set[str]:
    """Add scans to the history once each, received at one time; return the event ids that were new."""
    if not rows:
        return set()
    if _on_postgres(session):
        names = ", ".join(rows[0])
        source, arrays = unnest(session.get_bind().dialect, scans, rows, list(rows[0]))
        statement = text(
            f"INSERT INTO scans ({names}, received_at) SELECT {names}, :received_at FROM {source} "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        ).bindparams(bindparam("received_at", type_=scans.c.received_at.type))
        return set((await execute(session, statement, {**arrays, "received_at": received_at})).scalars())
    added = sqlite.insert(scans).on_conflict_do_nothing(index_elements=["event_id"])
    rows = [{**row, "received_at": received_at} for row in rows]
    return set((await execute(session, added.returning(scans.c.event_id), rows)).scalars())
