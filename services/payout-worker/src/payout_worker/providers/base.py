"""The payment-provider interface: batch transfer with a per-transfer idempotency key, and a query.

Adapters never raise for a transport problem: a timeout, a 5xx or SYSTEM_ERROR becomes an `unknown`
result, which the engine resolves by querying and then retrying the identical request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

MIN_AMOUNT = Decimal("0.10")  # the smallest transfer Alipay accepts


class Outcome(StrEnum):
    paid = "paid"
    failed = "failed"  # definite: the provider will not pay this request (invalid account, over limit)
    unknown = "unknown"  # ambiguous: timeout, 5xx, SYSTEM_ERROR, still processing
    not_found = "not_found"  # (queries only) the provider never executed this out_biz_no


@dataclass(frozen=True)
class Transfer:
    """Everything a call carries for one payout; built from the ledger row, so identical on retry."""

    out_biz_no: str
    amount: Decimal
    payee_account: str
    payee_name: str
    title: str
    remark: str  # the cashback task id: one task, one transfer


@dataclass(frozen=True)
class TransferResult:
    out_biz_no: str
    outcome: Outcome
    provider_order_id: str | None = None
    provider_fund_order_id: str | None = None
    code: str | None = None
    message: str | None = None
    paid_at: datetime | None = None


def unknown(transfers: Sequence[Transfer] | Sequence[str], code: str, message: str) -> list[TransferResult]:
    return [
        TransferResult(
            t if isinstance(t, str) else t.out_biz_no, Outcome.unknown, code=code, message=message[:500]
        )
        for t in transfers
    ]


class PaymentProvider(Protocol):
    name: str
    max_batch: int  # transfers per batch
    fan_out: bool  # one call per transfer (under the QPS limit) rather than one call per batch

    async def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """One result per transfer, in any order."""

    async def query(self, out_biz_nos: Sequence[str]) -> list[TransferResult]: ...

    async def aclose(self) -> None: ...


class RateLimiter:
    """At most `rate` calls per second (the provider's QPS limit), spaced evenly."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)
