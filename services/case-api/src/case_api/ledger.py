"""The compensation ledger's store: the order lock, and entries reserved, granted, moved and released.

Every command that can change what an order may still receive calls `lock_orders` first, then reads the
ledger, checks and writes in the same transaction: the check and the write are one step on both databases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersales_shared.auth import Principal
from aftersales_shared.clock import as_utc
from aftersales_shared.ids import new_id
from aftersales_shared.problems import not_found
from sqlalchemy import bindparam, cast, null, union_all, update
from sqlalchemy import select as select_columns
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .domain import ledger as dl
from .domain import model as dm
from .domain.case import CaseDetails
from .domain.policy import allocate
from .domain.workflow import RELEASED
from .models import Case, CashbackTask, LedgerEntry, Order, OrderLine

LIVE = col(LedgerEntry.status) != dl.EntryStatus.RELEASED


async def lock_orders(
    session: AsyncSession, principal: Principal | None, *order_ids: str
) -> dict[str, Order]:
    """Take the orders' row locks, in id order (two commands naming the same two orders cannot deadlock),
    and return the orders. PostgreSQL: SELECT ... FOR UPDATE; SQLite: the database's one writer lock, taken
    now rather than at the first write. Another shop's order is 404, as on GET."""
    return {
        order_id: order
        for order_id, (order, _) in (await _lock(session, principal, order_ids, with_lines=False)).items()
    }


async def lock_orders_with_lines(
    session: AsyncSession, principal: Principal | None, *order_ids: str
) -> dict[str, tuple[Order, list[OrderLine]]]:
    """`lock_orders`, then each order's lines, read by a statement of their own once the locks are held: a
    statement that waited for a lock sees the rows of other tables as they were when it began, so lines
    read with the lock would miss what the order update it waited for wrote (a lower paid amount)."""
    return await _lock(session, principal, order_ids, with_lines=True)


# The lock statements, built once (they run in every money command); the orders' ids are a parameter.
LOCK = (
    select(Order)
    .where(col(Order.order_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Order.order_id))
    .with_for_update()
    .execution_options(populate_existing=True)
)
LINES = (
    select(OrderLine)
    .where(col(OrderLine.order_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(OrderLine.order_id), col(OrderLine.position))
    .execution_options(populate_existing=True)  # as they are now, whatever the session read before
)


async def _lock(
    session: AsyncSession, principal: Principal | None, order_ids: tuple[str, ...], *, with_lines: bool
) -> dict[str, tuple[Order, list[OrderLine]]]:
    ids = sorted(set(order_ids))
    if session.get_bind().dialect.name == "sqlite":
        await session.exec(update(Order).where(col(Order.order_id).in_(ids)).values(version=Order.version))
    found = (await session.exec(LOCK, params={"ids": ids})).all()
    orders: dict[str, tuple[Order, list[OrderLine]]] = {order.order_id: (order, []) for order in found}
    for order_id in ids:
        if order_id not in orders:
            raise not_found("order", order_id)
        if principal is not None:
            principal.require_shop(orders[order_id][0].shop_id, hide=True, what="order", ident=order_id)
    if with_lines:
        for line in (await session.exec(LINES, params={"ids": ids})).all():
            orders[line.order_id][1].append(line)
    return orders


async def entries(session: AsyncSession, order_id: str) -> list[LedgerEntry]:
    rows = await session.exec(select(LedgerEntry).where(LedgerEntry.order_id == order_id))
    return list(rows.all())


ENTRY_COLUMNS = tuple(
    col(c)
    for c in (
        LedgerEntry.line_id,
        LedgerEntry.bucket,
        LedgerEntry.amount,
        LedgerEntry.status,
        LedgerEntry.new_order_id,
        LedgerEntry.new_line_id,
    )
)


def domain_entries(rows: Iterable[Any]) -> list[dl.Entry]:
    """Ledger rows (entries, or rows of ENTRY_COLUMNS) as the domain's entries."""
    return [
        dl.Entry(
            line_id=row.line_id,
            bucket=dl.Bucket(row.bucket),
            amount=row.amount,
            status=dl.EntryStatus(row.status),
            new_order_id=row.new_order_id,
            new_line_id=row.new_line_id,
        )
        for row in rows
    ]


def _none(column: Any) -> Any:
    """A NULL of the column's type, where the other half of a UNION has the column."""
    return cast(null(), column.type).label(column.key)


# Per line: what the ledger holds, and the order's live exchanges; built once, the order a parameter.
HISTORY = union_all(
    select_columns(*ENTRY_COLUMNS, _none(Case.lines), _none(Case.details)).where(
        col(LedgerEntry.order_id) == bindparam("order_id")
    ),
    select_columns(*(_none(c) for c in ENTRY_COLUMNS), col(Case.lines), col(Case.details)).where(
        col(Case.order_id) == bindparam("order_id"),
        col(Case.remedy) == "exchange",
        col(Case.status).not_in(RELEASED),
    ),
)


async def line_history(session: AsyncSession, order_id: str) -> dict[str, dm.LineHistory]:
    """Per line: what the ledger holds (R-COMP-CAP, R-POSTAGE) and the exchanges (R-EXCHANGE-ONCE).

    One round trip, after the order's lock (a statement that took the lock would read with the snapshot
    from before it waited): the order's entries, and its live exchange cases' lines and details (columns,
    not ORM objects: this runs in every request that opens a case or a cashback task)."""
    await session.flush()  # entries added in this transaction count too (a connection does not autoflush)
    rows = (await (await session.connection()).execute(HISTORY, {"order_id": order_id})).all()
    replacements: dict[str, datetime | None] = {}
    for row in rows:
        if row.line_id is None:  # an exchange case (every ledger entry has a line)
            signed = CaseDetails.model_validate(row.details).replacement_signed_at  # the case's typed details
            for line in row.lines:
                replacements[line["line_id"]] = as_utc(signed) if signed else None
    entries = [row for row in rows if row.line_id is not None]
    return dl.line_histories(domain_entries(entries), replacements)


async def price_claims(session: AsyncSession, new_order_id: str) -> list[dl.Entry]:
    """Every live entry whose price difference a new order evidences, on whichever order it was claimed."""
    rows = await session.exec(select(LedgerEntry).where(LedgerEntry.new_order_id == new_order_id, LIVE))
    return domain_entries(rows.all())


def reservations(
    *,
    order_id: str,
    amounts: Mapping[str, Decimal],
    bucket: dl.Bucket,
    kind: str,
    now: datetime,
    case_id: str | None = None,
    cashback_task_id: str | None = None,
    claims: Mapping[str, tuple[str, str]] | None = None,
) -> list[LedgerEntry]:
    """The entries reserving each line's amount (none for a zero), for the caller to write in its
    transaction; the caller holds the order's lock and checked."""
    entries = []
    for line_id, amount in amounts.items():
        if amount <= 0:
            continue
        new_order_id, new_line_id = (claims or {}).get(line_id, (None, None))
        entries.append(
            LedgerEntry(
                id=new_id("led"),
                order_id=order_id,
                line_id=line_id,
                bucket=bucket,
                kind=kind,
                amount=amount,
                status=dl.EntryStatus.RESERVED,
                case_id=case_id,
                cashback_task_id=cashback_task_id,
                new_order_id=new_order_id,
                new_line_id=new_line_id,
                created_at=now,
                updated_at=now,
            )
        )
    return entries


async def _owned(
    session: AsyncSession, *, case_id: str | None = None, cashback_task_id: str | None = None, **where: Any
) -> list[LedgerEntry]:
    """The live entries a case holds itself (not moved to a task), or that a task holds."""
    query = select(LedgerEntry).where(LIVE).order_by(col(LedgerEntry.id))
    if cashback_task_id is not None:
        query = query.where(LedgerEntry.cashback_task_id == cashback_task_id)
    else:
        query = query.where(LedgerEntry.case_id == case_id, col(LedgerEntry.cashback_task_id).is_(None))
    for name, value in where.items():
        query = query.where(getattr(LedgerEntry, name) == value)
    return list((await session.exec(query)).all())


def _set(rows: Iterable[LedgerEntry], now: datetime, **values: Any) -> None:
    for row in rows:
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = now


async def release(
    session: AsyncSession, now: datetime, *, case_id: str | None = None, cashback_task_id: str | None = None
) -> None:
    """What a withdrawn, rejected or cancelled grant had reserved is free again; what it granted stays."""
    reserved = await _owned(
        session, case_id=case_id, cashback_task_id=cashback_task_id, status=dl.EntryStatus.RESERVED
    )
    _set(reserved, now, status=dl.EntryStatus.RELEASED)


async def grant(session: AsyncSession, now: datetime, *, case_id: str, total: Decimal | None = None) -> None:
    """A case's reservation is granted (refunded, reshipped); a smaller `total` is shared over its lines in
    proportion, and the rest is released."""
    reserved = await _owned(session, case_id=case_id, status=dl.EntryStatus.RESERVED)
    if total is not None:
        shares = allocate(total, {row.id: row.amount for row in reserved})
        for row in reserved:
            row.amount = shares[row.id]
    _set(reserved, now, status=dl.EntryStatus.GRANTED)


async def grant_task(session: AsyncSession, now: datetime, cashback_task_id: str) -> None:
    """A paid task's money left: granted, whatever the task's entries said (a cancel after the transfer)."""
    rows = await session.exec(select(LedgerEntry).where(LedgerEntry.cashback_task_id == cashback_task_id))
    _set(rows.all(), now, status=dl.EntryStatus.GRANTED)


async def move_to_task(session: AsyncSession, now: datetime, *, case_id: str, cashback_task_id: str) -> None:
    """A case paid as cashback hands its reservation to the task that pays it."""
    _set(await _owned(session, case_id=case_id), now, cashback_task_id=cashback_task_id)


async def return_to_case(session: AsyncSession, now: datetime, cashback_task_id: str) -> bool:
    """A failed payout of a case's own cashback: the case keeps promising the money; True if it had any."""
    rows = await _owned(session, cashback_task_id=cashback_task_id)
    mine = [row for row in rows if row.case_id is not None]
    _set(mine, now, cashback_task_id=None, status=dl.EntryStatus.RESERVED)
    return bool(mine)


async def case_reserves_postage(session: AsyncSession, case_id: str) -> bool:
    """R-POSTAGE (once per return): the case, or a cashback task naming it, already holds postage."""
    tasks = select(CashbackTask.id).where(CashbackTask.case_id == case_id)
    rows = await session.exec(
        select(LedgerEntry.id).where(
            LedgerEntry.bucket == dl.Bucket.POSTAGE,
            LIVE,
            (col(LedgerEntry.case_id) == case_id) | col(LedgerEntry.cashback_task_id).in_(tasks),
        )
    )
    return rows.first() is not None
