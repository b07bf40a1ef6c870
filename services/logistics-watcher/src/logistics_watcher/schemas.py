"""What the HTTP API and the consumer read and write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aftersales_shared.events import (
    AlertKind,
    TrackingEvent,
)
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from .carriers import UnknownCarrierStatus, normalise
from .domain import Scan


class TrackingEventIn(TrackingEvent):
    """A tracking event (the one schema, aftersales_shared.events.TrackingEvent) as the watcher reads it:
    `status` derived from `carrier_status` where the sender gave only that, and checked against it."""

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
    {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": TrackingEvent.model_json_schema()}
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
