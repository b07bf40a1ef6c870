"""The watcher's HTTP API: ingest, parcels, alerts, and a detection run on demand."""

from __future__ import annotations

from typing import Annotated, Any

from aftersales_shared.auth import Principal, Role
from aftersales_shared.events import TRACKING_NO_MAX_LENGTH, TRACKING_NO_PATTERN
from aftersales_shared.fields import TextQuery
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.pagination import Page, decode_cursor, next_cursor
from aftersales_shared.problems import Problem, not_found
from aftersales_shared.web import IdempotencyKey, PrincipalDep, SessionDep
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from . import detectors, handlers
from .domain import KINDS
from .models import Alert, Parcel, ScanRecord
from .schemas import (
    AlertOut,
    ParcelOut,
    ScanOut,
    ScanRunOut,
    TrackingBatchIn,
    TrackingBatchOut,
)

router = APIRouter(prefix="/v1")
AlertKindQuery = Annotated[str | None, Query(pattern="^(" + "|".join(KINDS) + ")$")]
PROBLEM = {"description": "problem+json"}
TrackingNoPath = Annotated[
    str, Path(min_length=1, max_length=TRACKING_NO_MAX_LENGTH, pattern=TRACKING_NO_PATTERN)
]
TrackingNoQuery = Annotated[
    str | None, Query(min_length=1, max_length=TRACKING_NO_MAX_LENGTH, pattern=TRACKING_NO_PATTERN)
]


def _visible(principal: Principal, shop_id: str | None) -> bool:
    # A key limited to shops sees only parcels known to be theirs.
    return principal.shops is None or (shop_id is not None and shop_id in principal.shops)


@router.post(
    "/tracking-events",
    status_code=202,
    response_model=TrackingBatchOut,
    tags=["tracking"],
    summary="Send a batch of tracking events (warehouse)",
    responses={
        422: {
            "description": "the batch is malformed, or no event in it could be applied (`rejected` lists why)"
        },
        409: PROBLEM,
    },
)
async def post_tracking_events(
    body: TrackingBatchIn,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Up to 1,000 events. Each is checked on its own: invalid ones are listed in `rejected` by their index,
    events already received (same `event_id`) in `duplicates`; the others are applied. Scans may arrive
    in any order: they are placed by `occurred_at`. The same events may also come on logistics.tracking.v1."""
    principal.require(Role.warehouse)
    settings, now = request.app.state.settings, request.app.state.clock.now()

    async def produce() -> tuple[int, Any]:
        result = await handlers.ingest(
            session, body.events, settings=settings, now=now, shops=principal.shops
        )
        if result.rejected and not result.accepted and not result.duplicates:
            raise Problem(
                422,
                "validation_failed",
                "No event could be applied",
                "every event was rejected",
                rejected=[r.model_dump() for r in result.rejected],
            )
        return 202, TrackingBatchOut(
            accepted=result.accepted, duplicates=result.duplicates, rejected=result.rejected
        ).model_dump(mode="json")

    fingerprint = request_hash("POST", "/v1/tracking-events", body.model_dump(mode="json"))
    for attempt in range(3):
        try:
            return await idempotent(session, principal, idempotency_key, fingerprint, now, produce)
        except IntegrityError:
            # Another request created one of these parcels meanwhile: apply the batch again on top of it.
            await session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@router.get(
    "/parcels/{tracking_no}",
    response_model=ParcelOut,
    tags=["parcels"],
    summary="A parcel's state, history and open alerts",
    responses={404: PROBLEM},
)
async def get_parcel(
    tracking_no: TrackingNoPath, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    principal.require(Role.warehouse, Role.support, Role.ops)
    parcel = await session.get(Parcel, tracking_no)
    if parcel is None or not _visible(principal, parcel.shop_id):
        raise not_found("parcel", tracking_no)
    history = await session.exec(
        select(ScanRecord)
        .where(ScanRecord.tracking_no == tracking_no)
        .order_by(col(ScanRecord.occurred_at), col(ScanRecord.event_id))
    )
    open_alerts = await session.exec(
        select(Alert).where(Alert.tracking_no == tracking_no, Alert.status == "open").order_by(col(Alert.id))
    )
    return {
        **parcel.model_dump(),
        "history": [ScanOut(**s.model_dump()) for s in history],
        "open_alerts": [AlertOut(**a.model_dump()) for a in open_alerts],
    }


@router.get("/alerts", response_model=Page[AlertOut], tags=["alerts"], summary="Alerts, newest first")
async def list_alerts(
    session: SessionDep,
    principal: PrincipalDep,
    kind: AlertKindQuery = None,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    carrier: TextQuery = None,
    tracking_no: TrackingNoQuery = None,
    order_id: TextQuery = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    principal.require(Role.support, Role.ops)
    query = select(Alert)
    for column, value in (
        (Alert.kind, kind),
        (Alert.status, status),
        (Alert.carrier, carrier),
        (Alert.tracking_no, tracking_no),
        (Alert.order_id, order_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if principal.shops is not None:
        query = query.where(col(Alert.shop_id).in_(sorted(principal.shops)))
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(col(Alert.id) < after)
    rows = list((await session.exec(query.order_by(col(Alert.id).desc()).limit(limit + 1))).all())
    return {
        "items": [AlertOut(**a.model_dump()) for a in rows[:limit]],
        "next_cursor": next_cursor(rows, limit),
    }


@router.post("/scans/run", response_model=ScanRunOut, tags=["alerts"], summary="Run the detectors now (ops)")
async def run_scan(request: Request, session: SessionDep, principal: PrincipalDep) -> ScanRunOut:
    """The detectors also run by themselves every `LOGISTICS_WATCHER_SCAN_INTERVAL_SECONDS`."""
    principal.require(Role.ops)
    now = request.app.state.clock.now()
    await session.rollback()  # the passes have transactions of their own (and SQLite one connection)
    opened = await detectors.run(request.app.state.sessions, request.app.state.settings, now)
    return ScanRunOut(opened=opened, open=await detectors.OPEN_ALERTS.counts(session), ran_at=now)
