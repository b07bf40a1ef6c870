"""payout-worker tables: the payout ledger and its batches. Money is NUMERIC(12, 2) (integer cents in
SQLite: MoneyType); times are UTC."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from aftersales_shared.auth import ApiKey
from aftersales_shared.idempotency import IdempotencyRecord
from aftersales_shared.money import MoneyType
from aftersales_shared.outbox import InboxEntry, OutboxMessage
from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

SHARED_TABLES = (ApiKey, IdempotencyRecord, OutboxMessage, InboxEntry)


class PayoutStatus(StrEnum):
    """pending → batched → submitted → paid | failed | unknown (ARCHITECTURE.md, Money).

    `unknown` is an ambiguous answer: it is queried, then retried with the identical request.
    `held_for_review`: it would pass a risk limit (`hold_reason`); never batched or paid until ops
    releases it (→ pending) or cancels it.
    `cancelled`: the task was withdrawn, or ops cancelled the payout, before it was submitted."""

    pending = "pending"
    held_for_review = "held_for_review"
    batched = "batched"
    submitted = "submitted"
    paid = "paid"
    failed = "failed"
    unknown = "unknown"
    cancelled = "cancelled"


FINAL = frozenset({PayoutStatus.paid, PayoutStatus.failed, PayoutStatus.cancelled})
IN_FLIGHT = (PayoutStatus.submitted, PayoutStatus.unknown)
# What the task's cancellation still stops: nothing has gone to the provider yet.
CANCELLABLE = (PayoutStatus.pending, PayoutStatus.batched, PayoutStatus.held_for_review)
# What a cancellation arrives too late for: the transfer may have been (or was) executed.
SENT = (PayoutStatus.submitted, PayoutStatus.unknown, PayoutStatus.paid)
# What counts toward the risk limits' daily totals (limits.py): every payout that may be paid unreviewed.
COUNTED = (PayoutStatus.pending, PayoutStatus.batched, *SENT)
PAYEE_LENGTH = 100  # the payee columns' width (the shared Payee model's limit: nothing longer is signed)


class Payout(SQLModel, table=True):
    """One ledger entry per cashback task (R-CASHBACK-ONCE). `out_biz_no` is the payout id,
    fixed when the entry is created and sent unchanged on every call."""

    __tablename__ = "payouts"
    __table_args__ = (
        Index("ix_payouts_status_due_at", "status", "due_at"),
        Index("ix_payouts_status_check_after", "status", "check_after"),
        Index("ix_payouts_shop_id_id", "shop_id", "id"),
        # The risk limits' daily totals (limits.py).
        Index("ix_payouts_shop_id_approved_at", "shop_id", "approved_at"),
        Index("ix_payouts_payee_account_approved_at", "payee_account", "approved_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    out_biz_no: str = Field(unique=True, max_length=64)
    cashback_task_id: str = Field(unique=True, max_length=40)
    order_id: str = Field(index=True, max_length=64)
    shop_id: str = Field(max_length=64)
    case_id: str | None = Field(default=None, max_length=40)
    reason: str
    amount: Decimal = Field(sa_column=Column(MoneyType(), nullable=False))
    payee_account: str = Field(max_length=PAYEE_LENGTH)
    payee_name: str = Field(max_length=PAYEE_LENGTH)
    status: str = Field(default=PayoutStatus.pending, max_length=16)
    batch_id: str | None = Field(default=None, index=True, max_length=40)
    approved_at: datetime
    due_at: datetime  # the cut-off this payout must be paid by
    attempts: int = 0  # calls that carried this transfer
    check_after: datetime | None = None  # when a submitted/unknown payout is next queried
    provider_order_id: str | None = None
    provider_fund_order_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    submitted_at: datetime | None = None
    paid_at: datetime | None = Field(default=None, index=True)
    hold_reason: str | None = Field(default=None, max_length=32)  # limits.HoldReason, while held or after
    reviewed_by: str | None = Field(default=None, max_length=200)  # the key that released or cancelled it
    reviewed_at: datetime | None = None
    review_note: str | None = None
    # The task was cancelled after the transfer was (or may have been) executed: money to claw back.
    clawback_requested_at: datetime | None = None
    clawback_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class PayoutBatch(SQLModel, table=True):
    """A provider batch: at most 1,000 transfers, closed at the cut-off, when full, or by a flush."""

    __tablename__ = "payout_batches"

    id: str = Field(primary_key=True, max_length=40)
    trigger: str = Field(max_length=16)  # cutoff, full, flush
    status: str = Field(default="closed", max_length=16)  # closed → submitted → completed
    due_at: datetime | None = None
    size: int
    created_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
