"""All of case-api's queries. Repositories flush; the edge commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from aftersales_shared.auth import Principal
from aftersales_shared.clock import as_utc
from aftersales_shared.pagination import decode_cursor, decode_position, encode_position
from aftersales_shared.problems import Problem, not_found
from sqlalchemy import ColumnElement, tuple_
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import (
    CarrierClaim,
    Case,
    CaseEvent,
    CaseEvidence,
    CashbackTask,
    Evidence,
    Order,
    OrderLine,
    WebhookSubscription,
)

M = TypeVar("M", bound=SQLModel)
Changed = TypeVar("Changed", Case, CashbackTask)  # the tables with a change feed
Owned = TypeVar("Owned", Case, CashbackTask, CarrierClaim, WebhookSubscription)  # a shop's, found by id


async def get_order(session: AsyncSession, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise not_found("order", order_id)
    return order


async def visible_order(session: AsyncSession, principal: Principal, order_id: str) -> Order:
    """The order if this key may see its shop; another shop's order is 404 (its existence does not leak)."""
    order = await get_order(session, order_id)
    principal.require_shop(order.shop_id, hide=True, what="order", ident=order_id)
    return order


async def order_lines(session: AsyncSession, order_id: str) -> list[OrderLine]:
    rows = await session.exec(
        select(OrderLine).where(OrderLine.order_id == order_id).order_by(col(OrderLine.position))
    )
    return list(rows.all())


async def visible(
    session: AsyncSession,
    principal: Principal,
    model: type[Owned],
    ident: str,
    what: str,
    *,
    for_update: bool = False,
) -> Owned:
    """The row of the key's shops (another shop's is 404, as a missing one)."""
    query = select(model).where(model.id == ident)
    if for_update:  # and fresh: an earlier read of it in this session may predate the lock
        query = query.with_for_update().execution_options(populate_existing=True)
    row = (await session.exec(query)).first()
    if row is None:
        raise not_found(what, ident)
    principal.require_shop(row.shop_id, hide=True, what=what, ident=ident)
    return row


async def get_case(
    session: AsyncSession, principal: Principal, case_id: str, *, for_update: bool = False
) -> Case:
    return await visible(session, principal, Case, case_id, "case", for_update=for_update)


async def order_cases(session: AsyncSession, order_id: str) -> list[Case]:
    return list((await session.exec(select(Case).where(Case.order_id == order_id))).all())


async def order_cashback_tasks(session: AsyncSession, order_id: str) -> list[CashbackTask]:
    return list((await session.exec(select(CashbackTask).where(CashbackTask.order_id == order_id))).all())


async def case_cashback_tasks(session: AsyncSession, case_id: str) -> list[CashbackTask]:
    rows = await session.exec(select(CashbackTask).where(CashbackTask.case_id == case_id).with_for_update())
    return list(rows.all())


async def get_task(
    session: AsyncSession, principal: Principal, task_id: str, *, for_update: bool = False
) -> CashbackTask:
    return await visible(session, principal, CashbackTask, task_id, "cashback task", for_update=for_update)


async def case_evidence(session: AsyncSession, case_id: str) -> list[tuple[CaseEvidence, Evidence]]:
    rows = await session.exec(
        select(CaseEvidence, Evidence)
        .where(CaseEvidence.case_id == case_id)
        .where(CaseEvidence.evidence_id == Evidence.id)
        .order_by(col(CaseEvidence.attached_at))
    )
    return list(rows.all())


async def evidence_by_ids(session: AsyncSession, ids: Sequence[str]) -> list[Evidence]:
    if not ids:
        return []
    found = {e.id: e for e in (await session.exec(select(Evidence).where(col(Evidence.id).in_(ids)))).all()}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Problem(
            422,
            "unknown_evidence",
            "Unknown evidence",
            f"no evidence {', '.join(missing)}",
            errors=[{"field": "evidence_ids", "message": f"unknown id {i}"} for i in missing],
        )
    return [found[i] for i in ids]


async def reuse_of(
    session: AsyncSession, sha256: str, order_id: str, shop_id: str
) -> tuple[bool, str | None]:
    """Whether the same file already backs a case of another order (a reused photo), and that order when
    one is of `shop_id`; an order of another shop is never named."""
    row = (
        await session.exec(
            select(CaseEvidence.order_id, Case.shop_id)
            .join(Case, col(Case.id) == col(CaseEvidence.case_id))
            .where(CaseEvidence.sha256 == sha256, CaseEvidence.order_id != order_id)
            .order_by((col(Case.shop_id) == shop_id).desc(), col(CaseEvidence.attached_at))
        )
    ).first()
    if row is None:
        return False, None
    other_order, other_shop = row
    return True, other_order if other_shop == shop_id else None


async def timeline(session: AsyncSession, case_id: str) -> list[CaseEvent]:
    rows = await session.exec(
        select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(col(CaseEvent.at), col(CaseEvent.id))
    )
    return list(rows.all())


async def page(
    session: AsyncSession,
    model: type[M],
    id_column: Any,
    principal: Principal,
    shop_column: Any,
    filters: Sequence[ColumnElement[bool]],
    cursor: str | None,
    limit: int,
) -> list[M]:
    """One page, newest first, limited to the key's shops; fetches limit + 1 to know if more exist."""
    query = select(model).where(*filters)
    if principal.shops is not None:
        query = query.where(col(shop_column).in_(sorted(principal.shops)))
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(col(id_column) < after)
    rows = await session.exec(query.order_by(col(id_column).desc()).limit(limit + 1))
    return list(rows.all())


async def newest(
    session: AsyncSession,
    model: type[M],
    principal: Principal,
    time_column: Any,
    filters: Sequence[ColumnElement[bool]],
    since: datetime | None,
    limit: int,
) -> list[M]:
    """A register's rows of the key's shops, newest first, from `since` on."""
    query = select(model).where(*filters)
    if principal.shops is not None:
        query = query.where(col(model.shop_id).in_(sorted(principal.shops)))  # type: ignore[attr-defined]
    if since is not None:
        query = query.where(col(time_column) >= since)
    rows = await session.exec(query.order_by(col(time_column).desc()).limit(limit))
    return list(rows.all())


async def changes(
    session: AsyncSession,
    model: type[Changed],
    principal: Principal,
    shop_column: Any,
    filters: Sequence[ColumnElement[bool]],
    updated_after: datetime | None,
    cursor: str | None,
    limit: int,
    horizon: datetime,
) -> list[Changed]:
    """The change feed: rows changed after `updated_after` (or after the cursor's position), oldest change
    first by (updated_at, id), up to `horizon`; fetches limit + 1 to know if more exist. Nothing changed
    later than the horizon is shown yet, so no transaction still open can commit a change behind a position
    a client has passed."""
    updated_at, row_id = col(model.updated_at), col(model.id)
    query = select(model).where(*filters, updated_at <= horizon)
    if principal.shops is not None:
        query = query.where(col(shop_column).in_(sorted(principal.shops)))
    if cursor:
        query = query.where(tuple_(updated_at, row_id) > tuple_(*decode_position(cursor)))
    elif updated_after is not None:
        query = query.where(updated_at > updated_after)
    rows = await session.exec(query.order_by(updated_at, row_id).limit(limit + 1))
    return list(rows.all())


def feed_cursor(rows: Sequence[Any], limit: int, cursor: str | None) -> str | None:
    """Where the next poll starts: after the last change shown (or where this one started)."""
    shown = rows[:limit]
    return encode_position(as_utc(shown[-1].updated_at), shown[-1].id) if shown else cursor


def equal_to(*pairs: tuple[Any, Any]) -> list[ColumnElement[bool]]:
    """`column == value` for each pair whose value was given (the list filters of an endpoint)."""
    return [col(column) == value for column, value in pairs if value is not None]


def created_after(column: Any, value: datetime | None) -> list[ColumnElement[bool]]:
    return [] if value is None else [col(column) >= value]


def assigned_to(assignee: str | None) -> list[ColumnElement[bool]]:
    """Cases this person works; `none`: the cases nobody has taken."""
    if assignee is None:
        return []
    return [col(Case.assignee).is_(None) if assignee == "none" else col(Case.assignee) == assignee]


def shipped_by(carrier: str | None) -> list[ColumnElement[bool]]:
    """Cases whose order was shipped by this carrier (the order snapshot's `shipment.carrier`)."""
    if carrier is None:
        return []
    orders = select(Order.order_id).where(Order.shipment["carrier"].as_string() == carrier)  # type: ignore[index]
    return [col(Case.order_id).in_(orders)]
