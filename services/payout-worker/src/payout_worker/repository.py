"""All of payout-worker's queries. Repositories flush; the edge commits.

Row locks: SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL, so two replicas never claim the same
payout; SQLite has one writer (and ignores FOR UPDATE), so claims there are serial anyway. The hot
paths (thousands of payouts a minute at the cut-off) use bulk statements rather than ORM objects.

The risk limits' check and insert are one step: on PostgreSQL the transaction first takes advisory
locks on the shops and payees it is about to count (lock_limits); on SQLite the single writer does it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from aftersales_shared.auth import Principal
from aftersales_shared.db import one_of
from aftersales_shared.pagination import decode_cursor
from sqlalchemy import ColumnElement, Integer, Row, Table, bindparam, func, text, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .limits import DayTotals, day_bounds
from .models import COUNTED, FINAL, IN_FLIGHT, Payout, PayoutBatch, PayoutStatus

# What a transfer, a state change and a result event need from a payout.
WORKING_COLUMNS = tuple(
    col(c)
    for c in (
        Payout.id,
        Payout.out_biz_no,
        Payout.cashback_task_id,
        Payout.order_id,
        Payout.amount,
        Payout.payee_account,
        Payout.payee_name,
        Payout.status,
        Payout.batch_id,
        Payout.attempts,
        Payout.provider_order_id,
        Payout.provider_fund_order_id,
        Payout.submitted_at,
    )
)
Working = Row[Any]


async def _rows(session: AsyncSession, query: Any) -> list[Working]:
    """Rows of selected columns (not ORM objects: the hot paths move a thousand at a time)."""
    return cast(list[Working], list((await session.exec(query)).all()))


async def payout_for_task(
    session: AsyncSession, cashback_task_id: str, *, for_update: bool = False
) -> Payout | None:
    query = select(Payout).where(Payout.cashback_task_id == cashback_task_id)
    if for_update:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def lock_payout(session: AsyncSession, payout_id: str) -> Payout | None:
    return (await session.exec(select(Payout).where(Payout.id == payout_id).with_for_update())).first()


# Advisory lock keys (the two-int4 form, apart from the relay's single bigint key): a namespace, then a
# stable 32-bit hash of the shop id, or one of PAYEE_STRIPES stripes of the payee (a batch of a thousand
# approvals to a thousand payees takes at most PAYEE_STRIPES locks, well within max_locks_per_transaction).
SHOP_LOCKS = 0x504F_5348  # "POSH"
PAYEE_LOCKS = 0x504F_5059  # "POPY"
PAYEE_STRIPES = 64


def _hash32(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big", signed=True)


def limit_lock_keys(shops: Iterable[str], payees: Iterable[str]) -> list[tuple[int, int]]:
    """The advisory locks guarding these shops' and payees' daily totals, in the one order every
    transaction takes them, so two batches of approvals spanning the same shops do not deadlock. (A
    consumed chunk holding two runs of approvals takes two sets; should that ever deadlock, PostgreSQL
    aborts one and the consumer handles that chunk again one event at a time.)"""
    keys = {(SHOP_LOCKS, _hash32(s)) for s in shops}
    keys |= {(PAYEE_LOCKS, _hash32(p) % PAYEE_STRIPES) for p in payees}
    return sorted(keys)


_TAKE_LOCKS = text(
    "SELECT pg_advisory_xact_lock(k.ns, k.key) FROM "
    "(SELECT ns, key FROM unnest(CAST(:ns AS integer[]), CAST(:keys AS integer[])) AS u(ns, key) "
    "ORDER BY ns, key OFFSET 0) AS k"
).bindparams(bindparam("ns", type_=ARRAY(Integer)), bindparam("keys", type_=ARRAY(Integer)))


async def lock_limits(session: AsyncSession, shops: Collection[str], payees: Collection[str]) -> None:
    """Serialise the risk-limit check and insert per shop and per payee until this transaction ends
    (PostgreSQL; SQLite's single writer serialises them already). One round trip, locks in order."""
    if session.get_bind().dialect.name != "postgresql" or not (shops or payees):
        return
    keys = limit_lock_keys(shops, payees)
    connection = await session.connection()
    await connection.execute(_TAKE_LOCKS, {"ns": [k[0] for k in keys], "keys": [k[1] for k in keys]})


async def day_totals(
    session: AsyncSession, days: Collection[date], shops: Collection[str], payees: Collection[str]
) -> DayTotals:
    """What these shops and payees (the payee across all shops) take on these Asia/Shanghai days, by
    the ledger: payouts approved that day that count toward the limits (models.COUNTED)."""
    totals = DayTotals()
    for day in days:
        start, end = day_bounds(day)
        window = (
            col(Payout.approved_at) >= start,
            col(Payout.approved_at) < end,
            col(Payout.status).in_(COUNTED),
        )
        for column, wanted, into in (
            (Payout.shop_id, shops, totals.shops),
            (Payout.payee_account, payees, totals.payees),
        ):
            if not wanted:
                continue
            rows = await session.exec(
                select(col(column), func.sum(Payout.amount))
                .where(one_of(session, col(column), sorted(wanted)), *window)
                .group_by(col(column))
            )
            for key, amount in rows.all():
                into[str(key), day] = Decimal(amount or 0)
    return totals


async def tasks_with_payouts(session: AsyncSession, task_ids: Sequence[str]) -> set[str]:
    rows = await session.exec(
        select(Payout.cashback_task_id).where(one_of(session, col(Payout.cashback_task_id), task_ids))
    )
    return set(rows.all())


def table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


async def set_payouts(session: AsyncSession, ids: Sequence[str], **values: Any) -> None:
    """One UPDATE for many payouts that change alike."""
    if ids:
        await session.exec(update(Payout).where(one_of(session, col(Payout.id), ids)).values(**values))


async def claim_pending(
    session: AsyncSession, *, due_by: datetime | None, shops: Collection[str] | None, limit: int
) -> list[Row[Any]]:
    """Ids and due times of pending payouts due by `due_by` (all when None), oldest due first, locked."""
    query = select_columns(col(Payout.id), col(Payout.due_at)).where(
        col(Payout.status) == PayoutStatus.pending
    )
    if due_by is not None:
        query = query.where(col(Payout.due_at) <= due_by)
    if shops is not None:
        query = query.where(col(Payout.shop_id).in_(sorted(shops)))
    return await _rows(
        session,
        query.order_by(col(Payout.due_at), col(Payout.id)).limit(limit).with_for_update(skip_locked=True),
    )


async def claim_batched(session: AsyncSession, limit: int) -> list[Working]:
    """The payouts of the oldest batch still waiting to be sent that no other replica holds, locked."""
    rows = await _rows(
        session,
        select_columns(*WORKING_COLUMNS)
        .where(col(Payout.status) == PayoutStatus.batched)
        .order_by(col(Payout.batch_id), col(Payout.id))
        .limit(limit)
        .with_for_update(skip_locked=True),
    )
    return [r for r in rows if r.batch_id == rows[0].batch_id]


async def claim_in_flight(session: AsyncSession, now: datetime, limit: int) -> list[Working]:
    """Submitted or unknown payouts whose check is due (a crash, a timeout, SYSTEM_ERROR), locked."""
    return await _rows(
        session,
        select_columns(*WORKING_COLUMNS)
        .where(col(Payout.status).in_(IN_FLIGHT), col(Payout.check_after) <= now)
        .order_by(col(Payout.check_after))
        .limit(limit)
        .with_for_update(skip_locked=True),
    )


async def lock_working(session: AsyncSession, ids: Sequence[str]) -> list[Working]:
    if not ids:
        return []
    return await _rows(
        session,
        select_columns(*WORKING_COLUMNS).where(one_of(session, col(Payout.id), ids)).with_for_update(),
    )


async def complete_batches(session: AsyncSession, batch_ids: Collection[str], now: datetime) -> None:
    """Mark the batches whose every payout is final as completed."""
    if not batch_ids:
        return
    still_open = select(Payout.batch_id).where(
        col(Payout.batch_id).in_(batch_ids), col(Payout.status).not_in(FINAL)
    )
    await session.exec(
        update(PayoutBatch)
        .where(
            col(PayoutBatch.id).in_(batch_ids),
            col(PayoutBatch.id).not_in(still_open),
            col(PayoutBatch.status) != "completed",
        )
        .values(status="completed", completed_at=now)
    )


def shop_filter(principal: Principal) -> list[ColumnElement[bool]]:
    return [] if principal.shops is None else [col(Payout.shop_id).in_(sorted(principal.shops))]


async def page_payouts(
    session: AsyncSession,
    principal: Principal,
    filters: Sequence[ColumnElement[bool]],
    cursor: str | None,
    limit: int,
) -> list[Payout]:
    """Newest first, limited to the key's shops; limit + 1 rows tell whether a next page exists."""
    query = select(Payout).where(*filters, *shop_filter(principal))
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(col(Payout.id) < after)
    return list((await session.exec(query.order_by(col(Payout.id).desc()).limit(limit + 1))).all())


async def page_batches(
    session: AsyncSession, principal: Principal, status: str | None, cursor: str | None, limit: int
) -> list[tuple[PayoutBatch, dict[str, Any]]]:
    """Batches newest first with their counts and totals, as far as the key's shops go."""
    query = select(PayoutBatch)
    if status is not None:
        query = query.where(PayoutBatch.status == status)
    if principal.shops is not None:
        query = query.where(
            col(PayoutBatch.id).in_(
                select(Payout.batch_id)
                .where(*shop_filter(principal))
                .where(col(Payout.batch_id).is_not(None))
            )
        )
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(col(PayoutBatch.id) < after)
    batches = list((await session.exec(query.order_by(col(PayoutBatch.id).desc()).limit(limit + 1))).all())
    totals: dict[str, dict[str, Any]] = {
        b.id: {"counts": {}, "count": 0, "total": 0, "paid_total": 0} for b in batches
    }
    if batches:
        rows = await session.exec(
            select(Payout.batch_id, Payout.status, func.count(), func.sum(Payout.amount))
            .where(col(Payout.batch_id).in_(list(totals)), *shop_filter(principal))
            .group_by(col(Payout.batch_id), col(Payout.status))
        )
        for batch_id, status_, count, amount in rows.all():
            entry = totals[str(batch_id)]
            entry["counts"][status_] = count
            entry["count"] += count
            entry["total"] += amount or 0
            if status_ == PayoutStatus.paid:
                entry["paid_total"] += amount or 0
    return [(b, totals[b.id]) for b in batches]


async def paid_between(
    session: AsyncSession, principal: Principal, start: datetime, end: datetime
) -> list[Payout]:
    query = (
        select(Payout)
        .where(
            Payout.status == PayoutStatus.paid,
            col(Payout.paid_at) >= start,
            col(Payout.paid_at) < end,
            *shop_filter(principal),
        )
        .order_by(col(Payout.paid_at), col(Payout.id))
    )
    return list((await session.exec(query)).all())
