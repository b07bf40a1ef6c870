"""What the HTTP API and the consumer read and write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aftersales_shared.events import AlertKind, Direction, SignedBy, TrackingStatus
from aftersales_shared.fields import Instant, NulFree
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from .carriers import UnknownCarrierStatus, normalise
from .domain import Scan

TRACKING_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
TRACKING_NO_MAX_LENGTH = 64
Id = Field(min_length=1, max_length=TRACKING_NO_MAX_LENGTH, pattern=TRACKING_NO_PATTERN)


class TrackingEventIn(NulFree):
    """One scan: the normalised `status`, or the carrier's own code in `carrier_status` with its
    `carrier_format` (the watcher maps it), or both (they must agree)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "wh-evt-000123",
                    "tracking_no": "SF1000001",
                    "carrier": "SF",
                    "order_id": "TB20261101001",
                    "shop_id": "shop-a",
                    "direction": "outbound",
                    "status": "in_transit",
                    "occurred_at": "2026-11-02T21:40:00+08:00",
                    "location": "杭州转运中心",
                    "description": "快件已发车",
                },
                {
                    "event_id": "k100-88231",
                    "tracking_no": "YT9876543210",
                    "carrier": "YTO",
                    "carrier_format": "kuaidi100",
                    "carrier_status": "304",
                    "occurred_at": "2026-11-03T15:20:00+08:00",
                    "location": "菜鸟驿站",
                },
            ]
        },
    )

    event_id: str = Field(min_length=1, max_length=128)
    tracking_no: str = Id
    carrier: str = Field(min_length=1, max_length=64)
    order_id: str | None = Field(None, min_length=1, max_length=64)
    shop_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="the parcel's shop, fixed by its first event; a key for one shop may leave it out",
    )
    warehouse_id: str | None = Field(None, max_length=64)
    direction: Direction | None = Field(None, description="outbound (default for a new parcel) or return")
    status: TrackingStatus | None = None
    carrier_format: Literal["kuaidi100"] | None = None
    carrier_status: Annotated[str, Field(min_length=1, max_length=32)] | int | None = None
    occurred_at: Instant
    location: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=500)
    signed_by: SignedBy | None = None

    @model_validator(mode="after")
    def _status(self) -> TrackingEventIn:
        if self.carrier_status is not None:
            if self.carrier_format is None:
                raise ValueError("carrier_status needs carrier_format (e.g. kuaidi100)")
            try:
                status, signed_by = normalise(self.carrier_format, str(self.carrier_status))
            except UnknownCarrierStatus as exc:
                raise ValueError(str(exc)) from None
            if self.status is not None and self.status != status:
                raise ValueError(
                    f"status {self.status!r} disagrees with carrier_status {self.carrier_status!r} ({status})"
                )
            self.status = status
            self.signed_by = self.signed_by or signed_by
        if self.status is None:
            raise ValueError("send status, or carrier_format with carrier_status")
        return self

    def to_scan(self) -> Scan:
        assert self.status is not None
        return Scan(
            event_id=self.event_id,
            tracking_no=self.tracking_no,
            carrier=self.carrier,
            status=self.status,
            occurred_at=self.occurred_at.astimezone(UTC),
            order_id=self.order_id,
            shop_id=self.shop_id,
            warehouse_id=self.warehouse_id,
            direction=self.direction,
            signed_by=self.signed_by,
            location=self.location,
            description=self.description,
            carrier_status=None if self.carrier_status is None else str(self.carrier_status),
        )


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "event", "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


MAX_BATCH = 1000
EventsSchema = WithJsonSchema(
    {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": TrackingEventIn.model_json_schema()}
)


class TrackingBatchIn(BaseModel):
    # Items are validated one by one (a bad event is rejected, the others go on), so the list takes anything.
    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH), EventsSchema]


class Duplicate(BaseModel):
    index: int
    event_id: str


class Rejection(BaseModel):
    index: int
    errors: list[dict[str, Any]]


class TrackingBatchOut(BaseModel):
    accepted: int = Field(description="new scans applied")
    duplicates: list[Duplicate] = Field(description="event ids seen before (or twice in this batch): ignored")
    rejected: list[Rejection] = Field(description="invalid events, by position in `events`, with the reasons")


class ScanOut(BaseModel):
    event_id: str
    status: str
    occurred_at: datetime
    signed_by: str | None
    carrier_status: str | None
    location: str | None
    description: str | None


class AlertOut(BaseModel):
    id: str
    tracking_no: str
    order_id: str | None
    shop_id: str | None
    carrier: str
    direction: str
    kind: AlertKind
    status: Literal["open", "resolved"]
    score: float | None
    last_event_at: datetime
    opened_at: datetime
    resolved_at: datetime | None
    confirmed_at: datetime | None


class ParcelOut(BaseModel):
    tracking_no: str
    carrier: str
    order_id: str | None
    shop_id: str | None
    warehouse_id: str | None
    direction: str
    status: str
    status_at: datetime
    last_event_at: datetime
    signed_by: str | None
    delivered_at: datetime | None
    returned_at: datetime | None
    shipped_at: datetime | None = Field(
        description="its earliest created or picked_up scan: no other scan may be dated before it"
    )
    false_delivery_score: float | None
    history: list[ScanOut] = Field(description="every scan, in the order they happened")
    open_alerts: list[AlertOut]


class ScanRunOut(BaseModel):
    opened: dict[str, int] = Field(description="alerts opened by this run, per kind")
    open: dict[str, int] = Field(description="alerts open after this run, per kind")
    ran_at: datetime
