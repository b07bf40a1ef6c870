"""The compensation ledger's rules (R-COMP-CAP, R-POSTAGE, R-PRICE-PROTECT-ONCE): what an order may still
receive, given what its entries hold.

Pure: entries in, line histories and refusals out. The service keeps the entries and takes the order's lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from .model import ZERO, LineHistory, Order, PolicyRefusal, Rule


class Bucket(StrEnum):
    GOODS = "goods"  # refunds, price differences, cashback, reshipped goods: R-COMP-CAP, per line
    POSTAGE = "postage"  # shipping-fee refunds and return-postage reimbursements: R-POSTAGE, per order


class EntryStatus(StrEnum):
    RESERVED = "reserved"  # promised: the case or task may still grant it
    GRANTED = "granted"  # refunded, reshipped or paid
    RELEASED = "released"  # withdrawn, rejected, cancelled, or its payout failed for good


@dataclass(frozen=True, slots=True)
class Entry:
    line_id: str
    bucket: Bucket
    amount: Decimal
    status: EntryStatus
    new_order_id: str | None = None
    new_line_id: str | None = None

    @property
    def holds(self) -> bool:
        """Counts against the allowance: reserved or granted."""
        return self.status is not EntryStatus.RELEASED


def line_histories(
    entries: Iterable[Entry], replacements: Mapping[str, datetime | None] | None = None
) -> dict[str, LineHistory]:
    """Each line's history: what its entries hold, and `replacements` (line → the replacement's sign-off)
    for the lines already exchanged (R-EXCHANGE-ONCE)."""
    held: dict[Bucket, dict[str, Decimal]] = {bucket: defaultdict(lambda: ZERO) for bucket in Bucket}
    for entry in entries:
        if entry.holds:
            held[entry.bucket][entry.line_id] += entry.amount
    replacements = replacements or {}
    lines = set(held[Bucket.GOODS]) | set(held[Bucket.POSTAGE]) | set(replacements)
    return {
        line_id: LineHistory(
            line_id=line_id,
            compensated=held[Bucket.GOODS].get(line_id, ZERO),
            shipping_reimbursed=held[Bucket.POSTAGE].get(line_id, ZERO),
            exchanged=line_id in replacements,
            replacement_signed_at=replacements.get(line_id),
        )
        for line_id in lines
    }


def postage_allowance(
    order: Order, history: Mapping[str, LineHistory], receipt: Decimal | None = None
) -> Decimal:
    """R-POSTAGE: what the order's postage may still take: its shipping fee (or the higher receipt support
    recorded) less every shipping-fee refund and reimbursement it holds."""
    held = sum((h.shipping_reimbursed for h in history.values()), ZERO)
    return max(ZERO, max(order.shipping_fee, receipt or ZERO) - held)


def check_postage(
    order: Order,
    amount: Decimal,
    history: Mapping[str, LineHistory],
    *,
    reimbursement: bool,
    receipt: Decimal | None = None,
) -> None:
    """R-POSTAGE: a reimbursement of return postage is owed only without 运费险; no postage money passes what
    was paid for postage."""
    if reimbursement and order.shipping_insurance:
        raise PolicyRefusal(
            Rule.POSTAGE,
            "您好，您的订单已享有运费险，退货运费由运费险理赔，我们无法再为您报销运费，感谢理解。",
            "Your order has return-shipping insurance (运费险), which covers the return postage, so we "
            "cannot reimburse it as well. Thank you for understanding.",
            {"shipping_insurance": "true", "requested_amount": f"{amount:.2f}"},
        )
    remaining = postage_allowance(order, history, receipt)
    if amount > remaining:
        raise PolicyRefusal(
            Rule.POSTAGE,
            f"抱歉，本订单可退或可报销的运费余额为{remaining:.2f}元，申请金额{amount:.2f}元超出了范围，"
            "请调整金额后再提交。",
            f"Sorry: {remaining:.2f} CNY of postage can still be refunded or reimbursed on this order, so "
            f"{amount:.2f} CNY is more than we can pay. Please adjust the amount and try again.",
            {
                "shipping_fee": f"{order.shipping_fee:.2f}",
                "postage_receipt": "" if receipt is None else f"{receipt:.2f}",
                "remaining_allowance": f"{remaining:.2f}",
                "requested_amount": f"{amount:.2f}",
            },
        )


def check_price_claims(claims: Mapping[str, tuple[str, str]], entries: Iterable[Entry]) -> None:
    """R-PRICE-PROTECT-ONCE: `claims` maps each case line to the (new order, new line) evidencing its price
    difference; a new order's line backs one difference, once."""
    taken = {(e.new_order_id, e.new_line_id) for e in entries if e.holds and e.new_order_id is not None}
    wanted = list(claims.values())
    for line_id, (new_order_id, new_line_id) in claims.items():
        if (new_order_id, new_line_id) in taken or wanted.count((new_order_id, new_line_id)) > 1:
            raise PolicyRefusal(
                Rule.PRICE_PROTECT_ONCE,
                "您好，这笔新订单的差价已经为您申请过保价了，同一笔新订单只能保价一次，感谢理解。",
                "The price difference shown by this new order has already been claimed; one new order backs "
                "one price-protection claim. Thank you for understanding.",
                {"line_id": line_id, "new_order_id": new_order_id, "new_line_id": new_line_id},
            )
