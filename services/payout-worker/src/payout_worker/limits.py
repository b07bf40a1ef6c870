"""Payout risk limits (ARCHITECTURE.md, Money): ceilings per transfer, per payee (Alipay account) per day
and per shop per day. A payout that would pass one is held for review until ops releases or cancels it.

Pure: the day's totals so far are given. What counts toward a day is every payout approved that
Asia/Shanghai day that may still be paid without anyone looking at it again: pending, batched, submitted,
unknown and paid ones (released payouts included, from their release). Failed and cancelled payouts moved
no money; held ones move none unless ops releases them, so they do not block the payee's or the shop's
later payouts that day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from aftersales_shared.clock import SHANGHAI, as_utc


class HoldReason(StrEnum):
    """The ceiling a held payout would have passed (the first one, in this order)."""

    per_transfer = "per_transfer"
    per_payee_day = "per_payee_day"
    per_shop_day = "per_shop_day"


class LimitSettings(Protocol):
    @property
    def limit_per_transfer(self) -> Decimal: ...
    @property
    def limit_per_payee_day(self) -> Decimal: ...
    @property
    def limit_per_shop_day(self) -> Decimal: ...


@dataclass(frozen=True)
class Limits:
    per_transfer: Decimal
    per_payee_day: Decimal
    per_shop_day: Decimal

    @classmethod
    def of(cls, settings: LimitSettings) -> Limits:
        return cls(settings.limit_per_transfer, settings.limit_per_payee_day, settings.limit_per_shop_day)


def limit_day(approved_at: datetime) -> date:
    """The Asia/Shanghai calendar day a payout counts toward: the day of its approval."""
    return as_utc(approved_at).astimezone(SHANGHAI).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of an Asia/Shanghai calendar day."""
    start = datetime.combine(day, time(0), SHANGHAI)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


@dataclass
class DayTotals:
    """What each payee and each shop takes per day so far (the ledger's, then a batch's own)."""

    payees: defaultdict[tuple[str, date], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    shops: defaultdict[tuple[str, date], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def hold_reason(
        self, limits: Limits, *, amount: Decimal, payee: str, shop_id: str, day: date
    ) -> HoldReason | None:
        """The first ceiling that taking `amount` would pass; None when it passes none (reaching a
        ceiling exactly is allowed)."""
        if amount > limits.per_transfer:
            return HoldReason.per_transfer
        if self.payees[payee, day] + amount > limits.per_payee_day:
            return HoldReason.per_payee_day
        if self.shops[shop_id, day] + amount > limits.per_shop_day:
            return HoldReason.per_shop_day
        return None

    def take(self, *, amount: Decimal, payee: str, shop_id: str, day: date) -> None:
        self.payees[payee, day] += amount
        self.shops[shop_id, day] += amount
