"""case-api tables. Money columns are NUMERIC(12, 2) (integer cents in SQLite: MoneyType); times are
stored in UTC."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from aftersales_shared.auth import ApiKey
from aftersales_shared.idempotency import IdempotencyRecord
from aftersales_shared.money import MoneyType
from aftersales_shared.outbox import InboxEntry, OutboxMessage
from sqlalchemy import JSON, Column, ForeignKey, Index, LargeBinary, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

SHARED_TABLES = (ApiKey, IdempotencyRecord, OutboxMessage, InboxEntry)


def money_column(nullable: bool = False) -> Any:
    return Field(
        default=None if nullable else Decimal("0.00"),
        sa_column=Column(MoneyType(), nullable=nullable),
    )


def json_column(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class Order(SQLModel, table=True):
    __tablename__ = "orders"

    order_id: str = Field(primary_key=True, max_length=64)
    shop_id: str = Field(index=True, max_length=64)
    platform: str
    buyer: dict[str, Any] = json_column()
    buyer_id: str = Field(index=True, max_length=64)
    paid_at: datetime
    shipping_fee: Decimal = money_column()
    shipping_insurance: bool = False
    shipment: dict[str, Any] | None = json_column(nullable=True)
    signed_at: datetime | None = None
    version: int = 1
    created_at: datetime
    updated_at: datetime


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"

    order_id: str = Field(primary_key=True, foreign_key="orders.order_id", max_length=64)
    line_id: str = Field(primary_key=True, max_length=64)
    position: int
    sku: str = Field(index=True, max_length=64)
    name: str
    size: str | None = None
    color: str | None = None
    category: str | None = None
    quantity: int
    unit_price: Decimal = money_column()
    paid_amount: Decimal = money_column()
    no_reason_return: bool = True


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_shop_id_id", "shop_id", "id"),
        Index("ix_cases_updated_at_id", "updated_at", "id"),  # the change feed
    )

    id: str = Field(primary_key=True, max_length=40)
    order_id: str = Field(foreign_key="orders.order_id", index=True, max_length=64)
    shop_id: str = Field(max_length=64)
    remedy: str = Field(index=True)
    reason: str = Field(index=True)
    status: str = Field(index=True)
    stage: str
    description: str | None = None
    lines: list[dict[str, Any]] = json_column()
    amount: Decimal | None = money_column(nullable=True)
    line_amounts: dict[str, str] = json_column()
    details: dict[str, Any] = json_column()  # remedy-specific facts: new order, return parcel, inspection...
    needs_retention: bool = False
    evidence_missing: int = 0
    created_by: str
    assignee: str | None = Field(default=None, index=True, max_length=128)  # the person working it
    version: int = 1
    created_at: datetime = Field(index=True)
    updated_at: datetime


class CaseEvent(SQLModel, table=True):
    """One timeline entry: every state change and action, with actor, time and data."""

    __tablename__ = "case_events"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    action: str
    actor: str
    from_status: str | None = None
    to_status: str
    data: dict[str, Any] = json_column()
    at: datetime


class LedgerEntry(SQLModel, table=True):
    """The compensation ledger, the only way money is promised to a buyer (R-COMP-CAP, R-POSTAGE).

    Every grant reserves here, under the order's lock, in the transaction that creates it: a case's money
    or reshipped goods' value (case_id), a cashback task's amount (cashback_task_id; both ids when a case
    is paid as cashback). `reserved` → `granted` once refunded, reshipped or paid; → `released` when the
    grant is withdrawn, rejected, cancelled or its payout fails for good."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # R-PRICE-PROTECT-ONCE: one new order evidences one price difference per line, once.
        Index(
            "uq_ledger_entries_price_claim",
            "new_order_id",
            "new_line_id",
            unique=True,
            sqlite_where=text("status <> 'released' AND new_order_id IS NOT NULL"),
            postgresql_where=text("status <> 'released' AND new_order_id IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    order_id: str = Field(index=True, max_length=64)
    line_id: str = Field(max_length=64)
    bucket: str = Field(max_length=16)  # goods (R-COMP-CAP) or postage (R-POSTAGE)
    kind: str = Field(max_length=32)  # refund, price_protection, cashback, reship, shipping_fee
    amount: Decimal = money_column()
    status: str = Field(max_length=16)  # reserved, granted, released
    case_id: str | None = Field(default=None, index=True, max_length=40)
    cashback_task_id: str | None = Field(default=None, index=True, max_length=40)
    new_order_id: str | None = Field(default=None, max_length=64)  # R-PRICE-PROTECT: the cheaper order
    new_line_id: str | None = Field(default=None, max_length=64)
    created_at: datetime
    updated_at: datetime


class Evidence(SQLModel, table=True):
    __tablename__ = "evidence"

    id: str = Field(primary_key=True, max_length=40)
    key_id: str = Field(max_length=40)  # the uploader's key: only it, or support, may attach the file
    shops: list[str] | None = json_column(nullable=True)  # the uploader's shops (None: every shop)
    sha256: str = Field(index=True, max_length=64)
    content_type: str
    kind: str  # image or video, as proven by decoding it
    # what decoding found (null for files uploaded before revision 0004, which were only sniffed)
    format: str | None = Field(default=None, max_length=16)  # jpeg, png, webp, heic, heif, avif, mp4, mov
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    size: int
    path: str
    filename: str | None = None
    uploaded_by: str
    created_at: datetime


class CaseEvidence(SQLModel, table=True):
    __tablename__ = "case_evidence"

    case_id: str = Field(primary_key=True, foreign_key="cases.id", max_length=40)
    evidence_id: str = Field(primary_key=True, foreign_key="evidence.id", max_length=40)
    order_id: str = Field(max_length=64)
    sha256: str = Field(index=True, max_length=64)
    # the same file already backs a case of another order: shown as a warning; the order is named only
    # when it is of this case's shop (another shop's order ids are not this shop's business)
    reused: bool = False
    reused_from_order_id: str | None = None
    attached_at: datetime


class RetentionEntry(SQLModel, table=True):
    """The retention register 挽留登记: offers and outcomes, for retention rate by reason and offer."""

    __tablename__ = "retention_register"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(max_length=64)
    shop_id: str = Field(max_length=64)
    remedy: str
    reason: str
    real_reason: str | None = None
    offer: str
    outcome: str
    recorded_by: str
    recorded_at: datetime


class InspectionEntry(SQLModel, table=True):
    """The inspections register 验货登记 (R-INSPECT): what each inspection checked and found."""

    __tablename__ = "inspections"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(max_length=64)
    shop_id: str = Field(max_length=64)
    remedy: str
    reason: str
    passed: bool | None = None  # R-RESALEABLE; None for a check made while the case was open
    tags_on: bool | None = None
    worn: bool | None = None
    washed: bool | None = None
    hang_tag_size: str | None = Field(default=None, max_length=32)  # R-SIZE
    wash_label_size: str | None = Field(default=None, max_length=32)
    neck_label_size: str | None = Field(default=None, max_length=32)
    sizes_agree: bool | None = None
    parcel_weight_g: int | None = None  # R-MISSING
    expected_weight_g: int | None = None
    weight_difference_g: int | None = None
    notes: str | None = None
    recorded_by: str
    recorded_at: datetime = Field(index=True)


class LogisticsFollowUp(SQLModel, table=True):
    """The logistics follow-up register 物流跟进表: every carrier problem, its evidence and outcome."""

    __tablename__ = "logistics_follow_up"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(max_length=64)
    shop_id: str = Field(max_length=64)
    carrier: str | None = None
    tracking_no: str | None = Field(default=None, index=True)
    problem: str
    evidence_ids: list[str] = json_column()
    reported_at: datetime | None = None
    sla_due_at: datetime | None = None
    escalated_at: datetime | None = None
    verdict: str | None = None
    outcome: str | None = None
    carrier_cost: Decimal | None = money_column(nullable=True)
    created_at: datetime
    updated_at: datetime


class CarrierClaim(SQLModel, table=True):
    """R-CARRIER-CLAIM: what a carrier's failure cost the shop, booked against that carrier (one claim per
    follow-up entry) and followed to its outcome: claimed → accepted → paid, or refused."""

    __tablename__ = "carrier_claims"

    id: str = Field(primary_key=True, max_length=40)
    follow_up_id: str = Field(foreign_key="logistics_follow_up.id", unique=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(max_length=64)
    shop_id: str = Field(index=True, max_length=64)
    carrier: str = Field(index=True, max_length=64)
    tracking_no: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16)  # claimed, accepted, paid, refused
    goods_amount: Decimal = money_column()  # a reship's goods, or a lost parcel's value
    postage_amount: Decimal = money_column()  # the reship's or the return's postage
    claimed_amount: Decimal = money_column()
    accepted_amount: Decimal | None = money_column(nullable=True)
    paid_amount: Decimal | None = money_column(nullable=True)
    refusal_reason: str | None = None
    note: str | None = None
    claimed_by: str
    claimed_at: datetime = Field(index=True)
    decided_at: datetime | None = None
    paid_at: datetime | None = None
    version: int = 1
    updated_at: datetime


class ReshipOrder(SQLModel, table=True):
    __tablename__ = "reship_orders"

    id: str = Field(primary_key=True, max_length=40)
    case_id: str = Field(foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(index=True, max_length=64)
    shop_id: str = Field(max_length=64)
    lines: list[dict[str, Any]] = json_column()
    value: Decimal = money_column()
    note: str
    status: str = "created"
    flagged_for_review: bool = False
    created_at: datetime


class CashbackTask(SQLModel, table=True):
    """返现任务单: verified by the support group, paid by the payout worker exactly once."""

    __tablename__ = "cashback_tasks"
    __table_args__ = (Index("ix_cashback_tasks_updated_at_id", "updated_at", "id"),)  # the change feed

    id: str = Field(primary_key=True, max_length=40)
    order_id: str = Field(foreign_key="orders.order_id", index=True, max_length=64)
    shop_id: str = Field(index=True, max_length=64)
    line_id: str = Field(max_length=64)
    case_id: str | None = Field(default=None, max_length=40)
    reason: str
    amount: Decimal = money_column()
    payee: dict[str, Any] = json_column()
    status: str = Field(index=True)
    note: str | None = None
    created_by: str
    verified_by: str | None = None
    verified_at: datetime | None = None
    rejection_reason: str | None = None
    payout_id: str | None = None
    out_biz_no: str | None = None
    failure_code: str | None = None
    paid_at: datetime | None = None
    # R-POSTAGE: the return postage support saw on the buyer's receipt, when above the order's shipping fee
    postage_receipt: Decimal | None = money_column(nullable=True)
    cancelled_at: datetime | None = None
    # a cancel that came after the transfer: the money left, ops recovers it (the cashback register shows it)
    clawback_requested_at: datetime | None = None
    version: int = 1
    created_at: datetime = Field(index=True)
    updated_at: datetime


class BuyerMessage(SQLModel, table=True):
    """What the buyer was told or will be told: a template rendered with the case's facts, in zh with en
    beside it, and its delivery through a channel (R-MESSAGES)."""

    __tablename__ = "buyer_messages"
    __table_args__ = (Index("ix_buyer_messages_channel_status", "channel", "status"),)

    id: str = Field(primary_key=True, max_length=40)
    case_id: str | None = Field(default=None, foreign_key="cases.id", index=True, max_length=40)
    order_id: str = Field(index=True, max_length=64)
    shop_id: str = Field(max_length=64)
    cashback_task_id: str | None = Field(default=None, max_length=40)
    template: str = Field(max_length=40)
    channel: str = Field(max_length=16)  # webhook (the storefront's), sms
    status: str = Field(max_length=16)  # queued, sending, sent, failed
    message_zh: str
    message_en: str
    facts: dict[str, Any] = json_column()
    attempts: int = 0
    next_attempt_at: datetime | None = None  # SMS queued again after the provider did not take it
    provider_message_id: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime
    sent_at: datetime | None = None
    updated_at: datetime


class WebhookSubscription(SQLModel, table=True):
    """A shop's endpoint for signed webhooks (Standard Webhooks); the secrets are never logged."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_shop_id_id", "shop_id", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    shop_id: str = Field(max_length=64)
    url: str = Field(max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = json_column()  # empty: every subscribable type
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)  # after a rotation, until...
    previous_secret_expires_at: datetime | None = None
    status: str = "active"  # active, disabled (by the dispatcher or the owner)
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    failing_since: datetime | None = None  # the first failed attempt since the last success
    version: int = 1
    created_at: datetime
    updated_at: datetime


class WebhookDelivery(SQLModel, table=True):
    """One event for one subscription: its id is the `webhook-id`, the same on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_subscription_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    subscription_id: str = Field(
        sa_column=Column(
            String(40), ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=100)
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the CloudEvent, as sent
    status: str = "pending"  # pending, delivered, failed (given up)
    attempts: int = 0  # in the current series (a manual redelivery starts a new one)
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = None
    created_at: datetime
