"""The CloudEvents 1.0 envelope (JSON structured mode) and the event payloads that cross services.

Payload models are the schema other teams code against; `docs/events/` holds their JSON Schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from .fields import Instant, NulFree
from .ids import new_id
from .money import Money, MoneyOut

# The CloudEvents Kafka protocol binding, structured mode: the record's value is the whole event as JSON and
# its `content-type` header says so. Every record the services publish carries it (the embedded log too).
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
KAFKA_HEADERS: tuple[tuple[str, bytes], ...] = (("content-type", STRUCTURED_CONTENT_TYPE.encode()),)


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str = Field(examples=["aftersales.case.approved.v1"])
    subject: str | None = None
    time: Instant
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


def envelope(*, source: str, type: str, subject: str | None, data: BaseModel, at: datetime) -> CloudEvent:
    return CloudEvent(
        id=new_id("evt"),
        source=source,
        type=type,
        subject=subject,
        time=at,
        data=data.model_dump(mode="json"),
    )


def envelope_bytes(
    *, id: str, source: str, type: str, subject: str | None, data: BaseModel | dict[str, Any], at: datetime
) -> bytes:
    """`envelope(...).to_bytes()` with this id, in one serialisation and without validating our own
    payload again: what the outbox stores when it queues thousands of events at once."""
    cloud_event: dict[str, Any] = {"specversion": "1.0", "id": id, "source": source, "type": type}
    if subject is not None:
        cloud_event["subject"] = subject
    cloud_event |= {"time": at, "datacontenttype": "application/json", "data": data}
    return to_json(cloud_event)


class CaseEvent(NulFree):
    """`aftersales.case.<action>.v1` on aftersales.cases.v1, keyed by order id."""

    case_id: str
    order_id: str
    shop_id: str
    remedy: str
    reason: str
    status: str
    action: str
    amount: MoneyOut | None = None
    version: int
    data: dict[str, Any] = Field(default_factory=dict)


class Payee(NulFree):
    """Who receives a cashback: within what payout-worker's ledger and the provider take."""

    alipay_account: str = Field(min_length=1, max_length=100, description="Alipay login: phone or email")
    name: str = Field(min_length=1, max_length=100, description="the account holder's real name")


class Signed(NulFree):
    """An event whose reader acts on it only when its signature verifies (aftersales_shared.signing): an
    approval (or cancellation) case-api signed, which payout-worker pays (or cancels); a payout result
    payout-worker signed, which case-api applies."""

    signature: str | None = Field(
        None,
        description="the producer's Ed25519 signature (base64) over the event's canonical form "
        "(aftersales_shared.signing); the reader acts only on an event whose signature verifies",
    )
    signature_key_id: str | None = Field(
        None,
        description="which of the producer's keys signed it (`ed25519:` and 16 hex digits), for rotation",
    )


class CashbackApproved(Signed):
    """`aftersales.cashback.approved.v1` on aftersales.cashback.v1, keyed by cashback task id, signed by
    case-api."""

    cashback_task_id: str
    order_id: str
    shop_id: str
    case_id: str | None = None
    reason: str
    amount: Money
    payee: Payee
    approved_at: Instant


class CashbackCancelled(Signed):
    """`aftersales.cashback.cancelled.v1` on aftersales.cashback.v1: an approved task withdrawn, signed by
    case-api with its approval key (payout-worker cancels a payout only on a cancellation it can
    authenticate)."""

    cashback_task_id: str
    order_id: str
    shop_id: str
    reason: str


class CashbackTaskChanged(NulFree):
    """`aftersales.cashback.created.v1` and `aftersales.cashback.rejected.v1`: a task entered for
    verification, or refused by support (its reservation released), for storefronts that follow cashback."""

    cashback_task_id: str
    order_id: str
    shop_id: str
    case_id: str | None = None
    line_id: str
    reason: str
    amount: Money
    status: str
    rejection_reason: str | None = None
    at: Instant


Direction = Literal["outbound", "return"]
TrackingStatus = Literal[
    "created",
    "picked_up",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "exception",
    "returning",
    "returned",
    "lost",
]
SignedBy = Literal["recipient", "agent", "locker", "station", "other"]


TRACKING_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
TRACKING_NO_MAX_LENGTH = 64


class TrackingEvent(NulFree):
    """`logistics.tracking.scan.v1` on logistics.tracking.v1, keyed by tracking number; the same body, one
    per item, on the watcher's `POST /v1/tracking-events`. One scan: the normalised `status`, or the
    carrier's own code in `carrier_status` with its `carrier_format` (the watcher maps it), or both (they
    must agree)."""

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
    tracking_no: str = Field(min_length=1, max_length=TRACKING_NO_MAX_LENGTH, pattern=TRACKING_NO_PATTERN)
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
    status: TrackingStatus | None = Field(None, description="required unless carrier_status says it")
    carrier_format: Literal["kuaidi100"] | None = Field(None, description="the taxonomy of `carrier_status`")
    carrier_status: Annotated[str, Field(min_length=1, max_length=32)] | int | None = Field(
        None,
        description="the carrier's own state code, e.g. Kuaidi100 `304` (投柜或驿站签收), kept in the "
        "parcel's history; the watcher derives `status` (and `signed_by`) from it",
    )
    occurred_at: Instant
    location: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=500)
    signed_by: SignedBy | None = None


AlertKind = Literal["no_first_scan", "stalled", "suspected_lost", "suspected_false_delivery"]


class LogisticsAlert(NulFree):
    """`logistics.alert.<opened|resolved|confirmed>.v1` on logistics.alerts.v1, keyed by tracking number."""

    alert_id: str
    tracking_no: str
    order_id: str | None
    carrier: str
    kind: AlertKind
    status: Literal["open", "resolved"]
    opened_at: datetime
    resolved_at: datetime | None = None
    score: float | None = None
    shop_id: str | None = None
    direction: Direction | None = None
    last_event_at: datetime | None = Field(None, description="the parcel's latest scan when the alert opened")
    confirmed_at: datetime | None = Field(
        None,
        description="suspected_false_delivery: when the customer reported non-receipt "
        "(`logistics.alert.confirmed.v1`)",
    )


class ParcelMilestone(NulFree):
    """`logistics.parcel.<delivered|intercepted|returned>.v1` on logistics.parcels.v1, keyed by tracking
    number."""

    tracking_no: str
    order_id: str | None
    carrier: str
    direction: Direction
    milestone: Literal["delivered", "intercepted", "returned"]
    occurred_at: datetime
    signed_by: SignedBy | None = None
    shop_id: str | None = None


class PayoutResult(Signed):
    """`payouts.payout.<paid|failed>.v1` on payouts.results.v1, keyed by cashback task id, signed by
    payout-worker."""

    payout_id: str
    cashback_task_id: str
    order_id: str
    amount: Money
    status: Literal["paid", "failed"]
    out_biz_no: str
    provider_reference: str | None = None
    failure_code: str | None = None
    paid_at: datetime | None = None


class CustomerNotification(NulFree):
    """`aftersales.notification.requested.v1` on aftersales.cases.v1, keyed by order id: a message for
    the customer (e.g. `cashback_paid`, R-CASHBACK), for the messaging channel to deliver."""

    notification_id: str
    template: str = Field(examples=["cashback_paid"])
    order_id: str
    shop_id: str
    case_id: str | None = None
    cashback_task_id: str | None = None
    message_zh: str
    message_en: str
    data: dict[str, Any] = Field(default_factory=dict)
