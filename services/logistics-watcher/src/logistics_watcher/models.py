"""logistics-watcher tables. Times are stored in UTC."""

from __future__ import annotations

from datetime import datetime

from aftersales_shared.auth import ApiKey
from aftersales_shared.idempotency import IdempotencyRecord
from aftersales_shared.outbox import InboxEntry, OutboxMessage
from sqlalchemy import Index, Table, text
from sqlmodel import Field, SQLModel

SHARED_TABLES = (ApiKey, IdempotencyRecord, OutboxMessage, InboxEntry)


class Parcel(SQLModel, table=True):
    """One state per tracking number."""

    __tablename__ = "parcels"
    __table_args__ = (
        # The detectors' predicates: a status, a time range, the carrier's threshold, no alert of the kind
        # open yet. All four are in the index, so a scan reads the index only.
        Index("ix_parcels_detect", "status", "last_event_at", "carrier", "open_alerts"),
        Index("ix_parcels_suspicion", "false_delivery_score", "open_alerts"),
    )

    tracking_no: str = Field(primary_key=True, max_length=64)
    carrier: str = Field(max_length=64)
    order_id: str | None = Field(default=None, index=True, max_length=64)
    shop_id: str | None = Field(default=None, max_length=64)
    warehouse_id: str | None = Field(default=None, max_length=64)
    direction: str = Field(max_length=16)
    status: str = Field(max_length=32)
    status_at: datetime
    last_event_at: datetime
    signed_by: str | None = Field(default=None, max_length=16)
    out_for_delivery_seen: bool = False
    delivered_at: datetime | None = None
    returned_at: datetime | None = None
    shipped_at: datetime | None = None  # its earliest created/picked_up scan (domain.SHIPMENT)
    false_delivery_score: float | None = None
    open_alerts: int = 0  # a bit per alert kind open for this parcel (domain.BIT)
    created_at: datetime
    updated_at: datetime


class ScanRecord(SQLModel, table=True):
    """The parcel's history: every scan once (the event id is the deduplication key)."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_tracking_no_occurred_at", "tracking_no", "occurred_at"),)

    event_id: str = Field(primary_key=True, max_length=128)
    tracking_no: str = Field(max_length=64)
    status: str = Field(max_length=32)
    occurred_at: datetime
    signed_by: str | None = Field(default=None, max_length=16)
    carrier_status: str | None = Field(default=None, max_length=32)
    location: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)
    received_at: datetime


class Alert(SQLModel, table=True):
    """A detector's finding. At most one open alert per parcel and kind."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_tracking_no_kind",
            "tracking_no",
            "kind",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_alerts_status_kind", "status", "kind"),
    )

    id: str = Field(primary_key=True, max_length=40)
    tracking_no: str = Field(index=True, max_length=64)
    order_id: str | None = Field(default=None, index=True, max_length=64)
    shop_id: str | None = Field(default=None, max_length=64)
    carrier: str = Field(max_length=64)
    direction: str = Field(max_length=16)
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16)  # open, resolved
    score: float | None = None
    last_event_at: datetime  # the parcel's latest scan when the alert opened
    opened_at: datetime
    resolved_at: datetime | None = None
    confirmed_at: datetime | None = None  # the customer reported non-receipt (R-FALSE-DELIVERY)


class InterceptRequest(SQLModel, table=True):
    """case-api asked the carrier to intercept an order's parcel (R-RO-SHIPPED)."""

    __tablename__ = "intercept_requests"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(max_length=40)
    order_id: str = Field(index=True, max_length=64)
    shop_id: str | None = Field(default=None, max_length=64)  # the order's shop (None: asked before 0004)
    requested_at: datetime
    intercepted_at: datetime | None = None
    tracking_no: str | None = Field(default=None, max_length=64)


class Kuaidi100Subscription(SQLModel, table=True):
    """A tracking number to subscribe at Kuaidi100 (快递100), kept until it is: the subscriber claims due rows
    for a lease and sends them; a failed or interrupted call leaves the row due again (nothing is lost)."""

    __tablename__ = "kuaidi100_subscriptions"
    __table_args__ = (Index("ix_kuaidi100_subscriptions_due", "status", "next_attempt_at"),)

    tracking_no: str = Field(primary_key=True, max_length=64)
    carrier: str = Field(max_length=64)
    company: str = Field(max_length=32)  # Kuaidi100's code of the carrier (carriers.KUAIDI100_COMPANIES)
    order_id: str | None = Field(default=None, max_length=64)
    shop_id: str | None = Field(default=None, max_length=64)
    # pending (to send), subscribed (Kuaidi100 monitors it), finished (signed: shutdown), failed (refused)
    status: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: datetime
    claimed_until: datetime | None = None  # a subscriber is sending it until then
    last_error: str | None = Field(default=None, max_length=200)
    subscribed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


# The tables for Core statements (bulk and set-based work, where ORM objects would only cost time).
parcels: Table = Parcel.__table__  # type: ignore[attr-defined]
scans: Table = ScanRecord.__table__  # type: ignore[attr-defined]
alerts: Table = Alert.__table__  # type: ignore[attr-defined]
intercept_requests: Table = InterceptRequest.__table__  # type: ignore[attr-defined]
kuaidi100_subscriptions: Table = Kuaidi100Subscription.__table__  # type: ignore[attr-defined]
