"""What the watcher does with each input: one place to read what happens to a scan (from HTTP or
from logistics.tracking.v1), to an intercept request and to a report of non-receipt from case-api.
The detectors that open alerts are in detectors.py.

Handlers flush; the edge (the request, the consumer's unit of work) commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from aftersales_shared.db import insert_many, update_many
from aftersales_shared.events import ParcelMilestone
from aftersales_shared.ids import new_id
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select, update
from sqlmodel import col
from sqlmodel import select as select_models
from sqlmodel.ext.asyncio.session import AsyncSession

from . import kuaidi100, store
from .config import Settings
from .domain import (
    BIT,
    TURNED_BACK,
    Scan,
    Track,
    false_delivery_score,
    fold,
    is_before_shipment,
    received_back_at,
    shipped_at,
    still_holds,
)
from .models import InterceptRequest, alerts, parcels, scans
from .outgoing import alert_payload, queue_alerts, queue_milestones
from .schemas import Duplicate, Rejection, TrackingEventIn, field_errors
from .sql import execute

log = logging.getLogger(__name__)
P = parcels.c
INTERCEPT_LOCKS = 0x1C9  # the advisory-lock class of intercepts (a key per order)
TRACK_FIELDS = tuple(f.name for f in fields(Track))
NEW_TRACK = asdict(Track())  # a new parcel's columns of its track (no mutable values: shared by all)
WRITABLE = (
    *TRACK_FIELDS,
    "order_id",
    "shop_id",
    "warehouse_id",
    "false_delivery_score",
    "open_alerts",
)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def reject(self, index: int, field_name: str, message: str) -> None:
        self.rejected.append(
            Rejection(index=index, errors=[{"field": field_name, "message": message, "type": "value_error"}])
        )


SCAN_CHUNK = TypeAdapter(list[TrackingEventIn])
Problem = tuple[str, str]  # why a scan is refused: (field, message)
OWN_SHOPS_ONLY = "this key may only send events of its own shops' parcels"


async def ingest(
    session: AsyncSession,
    events: Sequence[Any],
    *,
    settings: Settings,
    now: datetime,
    shops: frozenset[str] | None = None,
) -> IngestResult:
    """Apply a batch of tracking events. Each is validated on its own; duplicates (by event id) are
    reported and ignored; `shops` limits the shops the sender may write for (None: a key for all shops,
    or the bus)."""
    result = IngestResult()
    candidates = _validate(events, settings, now, shops, result)
    rows = await store.lock_parcels(session, {scan.tracking_no for _, scan in candidates})
    stored = {tn: [row[c] for c in WRITABLE] for tn, row in rows.items()}  # what an update must change
    refused: list[tuple[int, Scan, Problem]] = []
    candidates = [
        (index, scan)
        for index, scan in candidates
        if _admissible(refused, index, scan, _conflict(rows.get(scan.tracking_no), scan, shops))
    ]
    early = _before_shipment(rows, candidates)
    candidates = [
        (index, scan) for index, scan in candidates if _admissible(refused, index, scan, early.get(index))
    ]
    owners = await store.order_shops(
        session, {o for _, scan in candidates if (o := _order_of(rows.get(scan.tracking_no), scan))}
    )
    new: set[str] = set()
    admitted: list[tuple[int, Scan]] = []
    for index, scan in candidates:
        row = rows.get(scan.tracking_no)
        problem = _conflict(row, scan, shops) or _order_conflict(row, scan, owners)
        if not _admissible(refused, index, scan, problem):
            continue
        if row is None:
            row = rows[scan.tracking_no] = _new_parcel(scan, now)
            new.add(scan.tracking_no)
        for name in ("order_id", "shop_id", "warehouse_id"):
            row[name] = row[name] or getattr(scan, name)
        admitted.append((index, scan))
    await _refuse(session, refused, result)

    fresh_ids = await store.add_scans(
        session,
        [
            {
                "event_id": s.event_id,
                "tracking_no": s.tracking_no,
                "status": s.status,
                "occurred_at": s.occurred_at,
                "signed_by": s.signed_by,
                "carrier_status": s.carrier_status,
                "location": s.location,
                "description": s.description,
            }
            for _, s in admitted
        ],
        received_at=now,
    )
    fresh: dict[str, list[Scan]] = defaultdict(list)
    for index, scan in admitted:
        if scan.event_id in fresh_ids:
            fresh[scan.tracking_no].append(scan)
            result.accepted += 1
        else:
            result.duplicates.append(Duplicate(index=index, event_id=scan.event_id))
    if fresh:
        await _apply(session, {tn: rows[tn] for tn in fresh}, stored, fresh, new, now)
        await kuaidi100.queue(session, [rows[tn] for tn in new if tn in fresh], settings, now)
    result.duplicates.sort(key=lambda d: d.index)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _validate(
    events: Sequence[Any],
    settings: Settings,
    now: datetime,
    shops: frozenset[str] | None,
    result: IngestResult,
) -> list[tuple[int, Scan]]:
    valid: list[tuple[int, Scan]] = []
    seen: set[str] = set()
    for index, parsed in enumerate(_parsed(events)):
        if isinstance(parsed, ValidationError):
            result.rejected.append(Rejection(index=index, errors=field_errors(parsed)))
            continue
        scan = parsed.to_scan()
        if shops is not None and scan.shop_id is None and len(shops) == 1:
            scan = replace(scan, shop_id=next(iter(shops)))  # the key's one shop
        if scan.occurred_at > now + settings.future_tolerance:
            result.reject(index, "occurred_at", "is in the future")
        elif shops is not None and scan.shop_id is None:
            result.reject(index, "shop_id", "is required from a key for several shops")
        elif shops is not None and scan.shop_id not in shops:
            result.reject(index, "shop_id", OWN_SHOPS_ONLY)
        elif scan.event_id in seen:
            result.duplicates.append(Duplicate(index=index, event_id=scan.event_id))
        else:
            seen.add(scan.event_id)
            valid.append((index, scan))
    return valid


def _parsed(events: Sequence[Any]) -> list[TrackingEventIn] | list[TrackingEventIn | ValidationError]:
    """The events validated in one call for the whole chunk; only a chunk holding an invalid event is gone
    through again one event at a time, to tell which ones and why."""
    try:
        return SCAN_CHUNK.validate_python(events)
    except ValidationError:
        pass
    parsed: list[TrackingEventIn | ValidationError] = []
    for raw in events:
        try:
            parsed.append(TrackingEventIn.model_validate(raw))
        except ValidationError as exc:
            parsed.append(exc)
    return parsed


def _admissible(
    refused: list[tuple[int, Scan, Problem]], index: int, scan: Scan, problem: Problem | None
) -> bool:
    if problem is not None:
        refused.append((index, scan, problem))
    return problem is None


async def _refuse(
    session: AsyncSession, refused: list[tuple[int, Scan, Problem]], result: IngestResult
) -> None:
    """Reject the scans refused, except one already in the parcel's history: that is a resend of a scan
    applied before (a redelivery from the bus, a retried request), a duplicate whatever came since (a
    later scan that ships the parcel after it, an intercept naming its order for another shop)."""
    if not refused:
        return
    known = await store.recorded(session, {scan.event_id for _, scan, _ in refused})
    for index, scan, problem in refused:
        if scan.event_id in known:
            result.duplicates.append(Duplicate(index=index, event_id=scan.event_id))
        else:
            result.reject(index, *problem)


def _conflict(row: dict[str, Any] | None, scan: Scan, shops: frozenset[str] | None) -> Problem | None:
    """Why this scan cannot belong to this parcel (or come from this sender), if it cannot. A parcel's shop
    is the one its first event named; a parcel without one gets it only from a key for all shops or from
    the bus, never from a key of some shops (that would take over another shop's parcel)."""
    if row is None:
        return None
    if shops is not None and row["shop_id"] not in shops:
        return "shop_id", OWN_SHOPS_ONLY
    for name in ("carrier", "direction", "order_id", "shop_id"):
        value = getattr(scan, name)
        if value is not None and row[name] is not None and value != row[name]:
            return name, f"the parcel's {name} is {row[name]!r}"
    return None


def _order_of(row: dict[str, Any] | None, scan: Scan) -> str | None:
    return scan.order_id or (row["order_id"] if row else None)


def _order_conflict(row: dict[str, Any] | None, scan: Scan, owners: dict[str, str]) -> Problem | None:
    """An order is one shop's: a scan of a parcel of another shop naming it is refused. The watcher knows an
    order's shop only from case-api (its intercept requests), not from the parcels that name the order: the
    first of those would win, and another shop could claim an order before its own parcels arrived."""
    order = _order_of(row, scan)
    shop = scan.shop_id or (row["shop_id"] if row else None)
    if order is None or shop is None or owners.get(order, shop) == shop:
        return None
    return "order_id", "the order is another shop's"


def _before_shipment(
    rows: dict[str, dict[str, Any]], candidates: list[tuple[int, Scan]]
) -> dict[int, Problem]:
    """The scans dated before their parcel was created or shipped (what its stored history and this batch
    say), by index."""
    batches: dict[str, list[Scan]] = defaultdict(list)
    for _, scan in candidates:
        batches[scan.tracking_no].append(scan)
    shipped = {tn: shipped_at((rows.get(tn) or {}).get("shipped_at"), batch) for tn, batch in batches.items()}
    return {
        index: ("occurred_at", f"is before the parcel was shipped ({when.isoformat()})")
        for index, scan in candidates
        if (when := shipped[scan.tracking_no]) is not None and is_before_shipment(scan, when)
    }


def _new_parcel(scan: Scan, now: datetime) -> dict[str, Any]:
    return {
        "tracking_no": scan.tracking_no,
        "carrier": scan.carrier,
        "direction": scan.direction or "outbound",
        "order_id": None,
        "shop_id": None,
        "warehouse_id": None,
        "false_delivery_score": None,
        "open_alerts": 0,
        "created_at": now,
        "updated_at": now,
        **NEW_TRACK,
    }


async def _apply(
    session: AsyncSession,
    rows: dict[str, dict[str, Any]],
    stored: dict[str, list[Any]],
    fresh: dict[str, list[Scan]],
    new: set[str],
    now: datetime,
) -> None:
    """Move each parcel on by its new scans, report milestones, resolve what no longer holds."""
    befores = {tn: Track() if tn in new else _track(row) for tn, row in rows.items()}
    behind = [tn for tn, batch in fresh.items() if any(befores[tn].is_behind(s) for s in batch)]
    histories = await _histories(session, {tn: rows[tn] for tn in behind})
    milestones: list[ParcelMilestone] = []
    review: dict[str, bool] = {}  # parcels whose open alerts may have ended: did each move?
    turned_back: list[dict[str, Any]] = []
    for tn, row in rows.items():
        before = befores[tn]
        if tn in histories:  # an out-of-order scan: the whole history is placed by time again
            track = fold(histories[tn], before)
        else:
            track = Track() if tn in new else _track(row)
            for scan in sorted(fresh[tn], key=Scan.sort_key):
                track.advance(scan)
        score_before = row["false_delivery_score"]
        row.update(
            {f: getattr(track, f) for f in TRACK_FIELDS},
            false_delivery_score=false_delivery_score(row["direction"], track),
        )
        milestones += _milestones(row, before, track)
        if (
            row["direction"] == "outbound"
            and track.status in TURNED_BACK
            and before.status not in TURNED_BACK
        ):
            turned_back.append(row)
        moved = track.last_event_at != before.last_event_at
        if row["open_alerts"] and (moved or row["false_delivery_score"] != score_before):
            review[tn] = moved
    await _resolve(session, rows, review, now)
    milestones += await _fulfil_intercepts(session, turned_back, now)
    # New parcels are inserted, not upserted: one another transaction created meanwhile is a conflict,
    # and the batch is retried against it rather than overwriting it.
    await insert_many(session, parcels, [row for tn, row in rows.items() if tn in new])
    known = [row for tn, row in rows.items() if tn not in new]
    await update_many(
        session, parcels, known, key="tracking_no", columns=_changed(known, stored), updated_at=now
    )
    await queue_milestones(session, milestones, now)


def _changed(rows: list[dict[str, Any]], stored: dict[str, list[Any]]) -> list[str]:
    """The columns some of these rows changed since they were locked: all an update needs to write (a scan
    moves a few: its status and times), and all the driver then encodes, thousands of rows at a time."""
    return [
        name
        for i, name in enumerate(WRITABLE)
        if any(row[name] != stored[row["tracking_no"]][i] for row in rows)
    ]


def _track(row: dict[str, Any]) -> Track:
    return Track(
        row["status"],
        row["status_at"],
        row["last_event_at"],
        row["signed_by"],
        row["out_for_delivery_seen"],
        row["delivered_at"],
        row["returned_at"],
        row["shipped_at"],
    )


async def _histories(session: AsyncSession, rows: dict[str, dict[str, Any]]) -> dict[str, list[Scan]]:
    if not rows:
        return {}
    history: dict[str, list[Scan]] = defaultdict(list)
    columns = (scans.c.event_id, scans.c.tracking_no, scans.c.status, scans.c.occurred_at, scans.c.signed_by)
    found = await execute(session, select(*columns).where(scans.c.tracking_no.in_(list(rows))))
    for s in found:
        history[s.tracking_no].append(
            Scan(
                event_id=s.event_id,
                tracking_no=s.tracking_no,
                carrier=rows[s.tracking_no]["carrier"],
                status=s.status,
                occurred_at=s.occurred_at,
                signed_by=s.signed_by,
            )
        )
    return history


def _milestones(row: dict[str, Any], before: Track, track: Track) -> list[ParcelMilestone]:
    out = []
    if row["direction"] == "outbound" and before.delivered_at is None and track.delivered_at is not None:
        out.append(milestone(row, "delivered", track.delivered_at, signed_by=track.signed_by))
    back = received_back_at(row["direction"], track)
    if received_back_at(row["direction"], before) is None and back is not None:
        out.append(milestone(row, "returned", back))
    return out


def milestone(row: dict[str, Any], kind: str, at: datetime, signed_by: str | None = None) -> ParcelMilestone:
    # The row is ours and typed already: no validation (an ingest may report tens of thousands)
    fields: dict[str, Any] = {
        "tracking_no": row["tracking_no"],
        "order_id": row["order_id"],
        "shop_id": row["shop_id"],
        "carrier": row["carrier"],
        "direction": row["direction"],
        "milestone": kind,
        "occurred_at": at,
        "signed_by": signed_by,
    }
    return ParcelMilestone.model_construct(**fields)


async def _resolve(
    session: AsyncSession, rows: dict[str, dict[str, Any]], review: dict[str, bool], now: datetime
) -> None:
    """An alert resolves itself when the parcel moves again (or its sign-off no longer looks false);
    alerts a customer confirmed stay open."""
    if not review:
        return
    found = await execute(
        session,
        select(alerts).where(
            alerts.c.tracking_no.in_(list(review)), alerts.c.status == "open", alerts.c.confirmed_at.is_(None)
        ),
    )
    ended = [
        dict(a._mapping)
        for a in found
        if not still_holds(
            a.kind,
            review[a.tracking_no],
            rows[a.tracking_no]["status"],
            rows[a.tracking_no]["false_delivery_score"],
        )
    ]
    if not ended:
        return
    await execute(
        session,
        update(alerts)
        .where(alerts.c.id.in_([a["id"] for a in ended]))
        .values(status="resolved", resolved_at=now),
    )
    for alert in ended:
        alert.update(status="resolved", resolved_at=now)
        rows[alert["tracking_no"]]["open_alerts"] &= ~BIT[alert["kind"]]
    await queue_alerts(session, "resolved", [alert_payload(a) for a in ended], now)


async def _fulfil_intercepts(
    session: AsyncSession, turned_back: Iterable[dict[str, Any]], now: datetime
) -> list[ParcelMilestone]:
    """R-RO-SHIPPED: an intercept asked for succeeded once the order's parcel turned back (a parcel of the
    order's shop: another shop's parcel naming the order proves nothing)."""
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in turned_back:
        if row["order_id"]:
            by_order[row["order_id"]].append(row)
    if not by_order:
        return []
    await _lock_intercepts(session, by_order)
    pending = (
        await session.exec(
            select_models(InterceptRequest).where(
                col(InterceptRequest.order_id).in_(list(by_order)),
                col(InterceptRequest.intercepted_at).is_(None),
            )
        )
    ).all()
    reported: dict[str, ParcelMilestone] = {}
    for request in pending:
        rows = [r for r in by_order[request.order_id] if _same_shop(request.shop_id, r["shop_id"])]
        if not rows:
            ids = {"order_id": request.order_id, "shop_id": request.shop_id}
            log.warning("an intercepted order's parcel turned back for another shop: ignored", extra=ids)
            continue
        row = rows[0]
        request.intercepted_at, request.tracking_no = now, row["tracking_no"]
        session.add(request)
        reported.setdefault(row["tracking_no"], milestone(row, "intercepted", row["status_at"]))
    return list(reported.values())


def _same_shop(order_shop: str | None, parcel_shop: str | None) -> bool:
    # None: a request from before shops were recorded, or a parcel only the bus or a key for all shops sent.
    return order_shop is None or parcel_shop is None or order_shop == parcel_shop


async def _lock_intercepts(session: AsyncSession, order_ids: Iterable[str]) -> None:
    """The orders' intercept lock, until the transaction ends. An ingest turning a parcel back and a new
    intercept request for its order, at once, would each miss the other's uncommitted write (row locks
    cannot help: the request's query matches no turned-back row yet); in turn, the second sees the first.
    SQLite has one writer at a time already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    # Sorted, so two batches take their shared orders in one order. (A transaction that also holds parcel
    # row locks can still deadlock with another; PostgreSQL aborts one, and the runner retries it.)
    for order_id in sorted(order_ids):
        await execute(session, select(func.pg_advisory_xact_lock(INTERCEPT_LOCKS, func.hashtext(order_id))))


async def request_intercept(
    session: AsyncSession, *, case_id: str, order_id: str, shop_id: str | None, now: datetime
) -> None:
    """case-api asked the carrier to intercept the order's parcel: report it once it turns back
    (at once if it already has)."""
    await _lock_intercepts(session, [order_id])
    session.add(
        InterceptRequest(
            id=new_id("icp"), case_id=case_id, order_id=order_id, shop_id=shop_id, requested_at=now
        )
    )
    await session.flush()
    turned = await execute(
        session,
        select(parcels).where(P.order_id == order_id, P.direction == "outbound", P.status.in_(TURNED_BACK)),
    )
    reported = await _fulfil_intercepts(session, [dict(r._mapping) for r in turned], now)
    await queue_milestones(session, reported, now)


async def report_non_receipt(session: AsyncSession, *, order_id: str, now: datetime) -> int:
    """R-FALSE-DELIVERY: the customer says the signed-for parcel never reached them; the open
    suspicion on the order's parcel is confirmed (and stays open for the carrier's verification)."""
    confirmed = (
        await execute(
            session,
            update(alerts)
            .where(
                alerts.c.order_id == order_id,
                alerts.c.kind == "suspected_false_delivery",
                alerts.c.status == "open",
                alerts.c.confirmed_at.is_(None),
            )
            .values(confirmed_at=now)
            .returning(*alerts.c),
        )
    ).all()
    await queue_alerts(session, "confirmed", [alert_payload(dict(a._mapping)) for a in confirmed], now)
    return len(confirmed)
