"""Domain types of the after-sales policy (POLICY.md): orders, case requests, decisions, refusals.

Pure Python: no I/O, no framework. Money is ``Decimal`` with two places; datetimes are timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value: Decimal) -> Decimal:
    """Round to the cent, half-up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def has_cents_only(value: Decimal) -> bool:
    return value.is_finite() and value == value.quantize(CENT)


def require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}")


class Rule(StrEnum):
    """Rule ids of POLICY.md, plus our own request-level checks (R-ORDER-LINE, R-REMEDY-REASON)."""

    SEVEN_DAY_WINDOW = "R-7D-WINDOW"
    SEVEN_DAY_EXCLUDED = "R-7D-EXCLUDED"
    RESALEABLE = "R-RESALEABLE"
    BEYOND_7D = "R-BEYOND-7D"
    EXCHANGE_ONCE = "R-EXCHANGE-ONCE"
    EXCHANGE_7D = "R-EXCHANGE-7D"
    PRICE_PROTECT = "R-PRICE-PROTECT"
    COMP_CAP = "R-COMP-CAP"
    POSTAGE = "R-POSTAGE"
    PRICE_PROTECT_ONCE = "R-PRICE-PROTECT-ONCE"
    LOST = "R-LOST"
    RO_UNSHIPPED = "R-RO-UNSHIPPED"
    RO_SHIPPED = "R-RO-SHIPPED"
    RO_RECEIVED = "R-RO-RECEIVED"
    REFUND_VERIFY = "R-REFUND-VERIFY"
    RR_RECEIVED = "R-RR-RECEIVED"
    RR_UNRECEIVED = "R-RR-UNRECEIVED"
    RESHIP = "R-RESHIP"
    CASHBACK = "R-CASHBACK"
    EVIDENCE = "R-EVIDENCE"
    RETENTION = "R-RETENTION"
    USAGE = "R-USAGE"
    # Ours: inspections recorded as data (size marks, worn or washed, parcel weight).
    INSPECT = "R-INSPECT"
    # Ours: the request names lines/quantities the order does not have.
    ORDER_LINE = "R-ORDER-LINE"
    # Ours: the remedy cannot serve the reason (e.g. exchange for a price drop).
    REMEDY_REASON = "R-REMEDY-REASON"


class Remedy(StrEnum):
    REFUND_ONLY = "refund_only"
    RETURN_REFUND = "return_refund"
    EXCHANGE = "exchange"
    RESHIP = "reship"
    PRICE_PROTECTION = "price_protection"
    CASHBACK = "cashback"
    CONSULTATION = "consultation"  # R-USAGE: an answer, no money


class Reason(StrEnum):
    NO_REASON = "no_reason"
    SIZE = "size"
    WORKMANSHIP = "workmanship"
    USAGE = "usage"
    DAMAGED = "damaged"
    LOST = "lost"
    MISSING_ITEM = "missing_item"
    WRONG_ITEM = "wrong_item"
    NO_TRACKING_UPDATE = "no_tracking_update"
    FALSE_DELIVERY = "false_delivery"
    EMPTY_PARCEL = "empty_parcel"
    PRICE_DROP = "price_drop"
    SHIPPING_FEE = "shipping_fee"
    OTHER = "other"
    # R-USAGE: questions about wear, answered by a consultation
    FADING = "fading"
    ODOR = "odor"
    SNAG = "snag"
    PILLING = "pilling"

    @property
    def is_subjective(self) -> bool:
        return self in SUBJECTIVE

    @property
    def is_carrier(self) -> bool:
        return self in CARRIER


# Customer-side reasons: they get the 7-day window (R-7D-WINDOW / R-BEYOND-7D) and retention (R-RETENTION).
# `size` counts: a wrong size is found at the first try-on and the manual handles it like a subjective
# return/exchange. A mislabelled garment (R-SIZE's tag check fails) is a quality fault: file `workmanship`.
# R-7D-EXCLUDED still only refuses `no_reason` (the rule's wording); a size claim needs photo evidence.
SUBJECTIVE: frozenset[Reason] = frozenset({Reason.NO_REASON, Reason.SIZE})

# The carrier is the responsible party (物流问题).
CARRIER: frozenset[Reason] = frozenset(
    {
        Reason.DAMAGED,
        Reason.LOST,
        Reason.MISSING_ITEM,
        Reason.WRONG_ITEM,
        Reason.NO_TRACKING_UPDATE,
        Reason.FALSE_DELIVERY,
        Reason.EMPTY_PARCEL,
    }
)

# R-USAGE: the reasons of a consultation; the first four are for nothing else.
USAGE_QUESTIONS: frozenset[Reason] = frozenset({Reason.FADING, Reason.ODOR, Reason.SNAG, Reason.PILLING})
CONSULTATION_REASONS: frozenset[Reason] = USAGE_QUESTIONS | {Reason.OTHER}

# R-EVIDENCE: at most five photos per case (the manual's 3–5); more are refused, not trimmed.
MAX_PHOTOS = 5

# R-EVIDENCE: minimum number of images per reason; one video satisfies any of them.
EVIDENCE_REQUIRED: Mapping[Reason, int] = MappingProxyType(
    {
        Reason.DAMAGED: 3,
        Reason.WORKMANSHIP: 3,
        Reason.MISSING_ITEM: 3,
        Reason.WRONG_ITEM: 3,
        Reason.EMPTY_PARCEL: 3,
        Reason.SIZE: 1,
    }
)


class Stage(StrEnum):
    UNSHIPPED = "unshipped"
    SHIPPED = "shipped"  # on its way, not received (also: refused at the door, intercepted)
    RECEIVED = "received"  # signed for (签收)


@dataclass(frozen=True, slots=True)
class OrderLine:
    line_id: str
    sku: str
    quantity: int
    unit_price: Decimal
    paid_amount: Decimal
    no_reason_return: bool = True  # R-7D-EXCLUDED when False
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    shop_id: str
    buyer_id: str
    paid_at: datetime
    lines: tuple[OrderLine, ...]
    shipping_fee: Decimal = ZERO
    shipping_insurance: bool = False
    shipped_at: datetime | None = None
    signed_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.paid_at, "paid_at")
        if self.shipped_at is not None:
            require_aware(self.shipped_at, "shipped_at")
        if self.signed_at is not None:
            require_aware(self.signed_at, "signed_at")

    def line(self, line_id: str) -> OrderLine:
        """Return the line with this id; KeyError if the order has none."""
        for line in self.lines:
            if line.line_id == line_id:
                return line
        raise KeyError(line_id)


@dataclass(frozen=True, slots=True)
class LineHistory:
    """What a line has had so far, including what open cases have reserved."""

    line_id: str
    # refunds + price protection + cashback + reshipped goods' value, granted or reserved (R-COMP-CAP)
    compensated: Decimal = ZERO
    # shipping-fee refunds and reimbursements; outside R-COMP-CAP (they repay the customer's own postage)
    shipping_reimbursed: Decimal = ZERO
    exchanged: bool = False  # R-EXCHANGE-ONCE
    replacement_signed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.replacement_signed_at is not None:
            require_aware(self.replacement_signed_at, "replacement_signed_at")


@dataclass(frozen=True, slots=True)
class CaseLine:
    line_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A customer's ask. Evidence is counted: `images` and `videos` already attached (R-EVIDENCE)."""

    remedy: Remedy
    reason: Reason
    lines: tuple[CaseLine, ...]
    amount: Decimal | None = None
    images: int = 0
    videos: int = 0
    new_order: Order | None = None  # R-PRICE-PROTECT: the order at the lower price
    new_unit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    remedy: Remedy
    reason: Reason
    stage: Stage
    # Money the customer gets; None when no money moves (exchange, reship).
    amount: Decimal | None
    # What each case line takes against R-COMP-CAP (money, or the reshipped goods' value). Add it to
    # LineHistory.compensated when the case is opened (reserved) or granted.
    line_amounts: dict[str, Decimal]
    needs_retention: bool  # R-RETENTION: the case starts with a retention step
    evidence_missing: int  # R-EVIDENCE: > 0 → the case starts in awaiting_evidence
    deadline: datetime | None  # the window this request was checked against, Asia/Shanghai
    rules: tuple[str, ...]
    # Shipping-fee money per line (reason shipping_fee); add it to LineHistory.shipping_reimbursed.
    shipping_amounts: dict[str, Decimal] = field(default_factory=dict)
    consultation: Consultation | None = None  # R-USAGE: the answer of a consultation


@dataclass(frozen=True, slots=True)
class Consultation:
    """R-USAGE: the standard explanation for a usage question, and the remedies the policy still allows."""

    explanation_zh: str
    explanation_en: str
    offered: tuple[Option, ...] = ()


class InvalidRequest(ValueError):
    """The request is malformed whatever the order says (a 422 validation error, not a policy refusal)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PolicyRefusal(Exception):
    """A policy rule refuses the request; the messages are courteous and customer-facing."""

    def __init__(
        self,
        rule: str,
        message_zh: str,
        message_en: str,
        facts: Mapping[str, str] | None = None,
        deadline: datetime | None = None,
    ) -> None:
        super().__init__(f"{rule}: {message_en}")
        self.rule = rule
        self.message_zh = message_zh
        self.message_en = message_en
        self.facts: dict[str, str] = {str(key): str(value) for key, value in (facts or {}).items()}
        self.deadline = deadline  # the window that closed or is yet to open, if any


@dataclass(frozen=True, slots=True)
class Option:
    line_id: str
    remedy: Remedy
    reason: Reason | None
    eligible: bool
    deadline: datetime | None
    rule: str
    message_zh: str
    message_en: str
