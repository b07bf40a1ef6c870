"""The HTTP contract of payout-worker (API.md): response models with examples."""

from __future__ import annotations

from datetime import datetime

from aftersales_shared.fields import NulFree
from aftersales_shared.money import MoneyOut
from pydantic import BaseModel, ConfigDict, Field


class PayoutPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "po_01kb2x4m7q8r9s0t1v2w3x4y5z",
                    "cashback_task_id": "cb_01kb2x3a5b6c7d8e9f0g1h2j3k",
                    "order_id": "TB20261101001",
                    "shop_id": "shop-a",
                    "case_id": None,
                    "reason": "shipping_fee",
                    "amount": "12.00",
                    "payee_name": "张三",
                    "payee_account": "zhangsan@example.com",
                    "status": "paid",
                    "batch_id": "bat_01kb2x9z8y7x6w5v4t3s2r1q0p",
                    "out_biz_no": "po_01kb2x4m7q8r9s0t1v2w3x4y5z",
                    "provider_order_id": "20261105110070000006210012345678",
                    "provider_fund_order_id": None,
                    "attempts": 1,
                    "failure_code": None,
                    "failure_message": None,
                    "approved_at": "2026-11-05T02:00:00Z",
                    "due_at": "2026-11-05T09:30:00Z",
                    "submitted_at": "2026-11-05T09:30:01Z",
                    "paid_at": "2026-11-05T09:30:02Z",
                    "hold_reason": "per_payee_day",
                    "reviewed_by": "ops-li",
                    "reviewed_at": "2026-11-05T08:12:40Z",
                    "review_note": "regular customer, two orders today",
                    "clawback_requested_at": None,
                    "clawback_reason": None,
                    "created_at": "2026-11-05T02:00:01Z",
                    "updated_at": "2026-11-05T09:30:02Z",
                }
            ]
        }
    )

    id: str
    cashback_task_id: str
    order_id: str
    shop_id: str
    case_id: str | None
    reason: str
    amount: MoneyOut
    payee_name: str
    payee_account: str
    status: str
    batch_id: str | None
    out_biz_no: str
    provider_order_id: str | None
    provider_fund_order_id: str | None
    attempts: int
    failure_code: str | None
    failure_message: str | None
    approved_at: datetime
    due_at: datetime
    submitted_at: datetime | None
    paid_at: datetime | None
    hold_reason: str | None = Field(
        None, description="the risk limit that held it: per_transfer, per_payee_day or per_shop_day"
    )
    reviewed_by: str | None = Field(None, description="the key that released or cancelled it")
    reviewed_at: datetime | None = None
    review_note: str | None = None
    clawback_requested_at: datetime | None = Field(
        None, description="its task was cancelled after the transfer was (or may have been) executed"
    )
    clawback_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class ReviewIn(NulFree):
    """What ops says when releasing or cancelling a payout (optional)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "regular customer, two orders today"}]}
    )

    note: str | None = Field(None, max_length=500)


class BatchPublic(BaseModel):
    id: str
    trigger: str
    status: str
    due_at: datetime | None
    size: int
    count: int
    counts: dict[str, int]
    total: MoneyOut
    paid_total: MoneyOut
    created_at: datetime
    submitted_at: datetime | None
    completed_at: datetime | None


class FlushResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"batches": ["bat_01kb2x9z8y7x6w5v4t3s2r1q0p"], "payouts": 128}]}
    )

    batches: list[str]
    payouts: int
