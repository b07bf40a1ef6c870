"""R-CARRIER-CLAIM 费用由快递承担: what a carrier's failure cost the shop is booked as a claim against that
carrier and followed to its outcome. Pure: amounts in, decisions out.

    claimed ──accept──▶ accepted ──pay──▶ paid
       └──────refuse──────┴──refuse──▶ refused
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from .case import CaseConflict
from .model import PolicyRefusal

CARRIER_CLAIM = "R-CARRIER-CLAIM"
ZERO = Decimal("0.00")


class ClaimStatus(StrEnum):
    claimed = "claimed"
    accepted = "accepted"
    paid = "paid"
    refused = "refused"


class ClaimAction(StrEnum):
    accept = "accept"
    refuse = "refuse"
    pay = "pay"


MOVES: dict[ClaimAction, tuple[frozenset[ClaimStatus], ClaimStatus]] = {
    ClaimAction.accept: (frozenset({ClaimStatus.claimed}), ClaimStatus.accepted),
    ClaimAction.refuse: (frozenset({ClaimStatus.claimed, ClaimStatus.accepted}), ClaimStatus.refused),
    ClaimAction.pay: (frozenset({ClaimStatus.accepted}), ClaimStatus.paid),
}


def claimable(carrier: str | None) -> str:
    """The carrier a claim is booked against: the follow-up entry's; without one there is nobody to claim."""
    if not carrier:
        raise PolicyRefusal(
            CARRIER_CLAIM,
            "该包裹的快递公司未知，无法向快递索赔。请先在订单中补充发货快递信息。",
            "The parcel's carrier is not known, so no claim can be made: add the shipment's carrier to the "
            "order first.",
        )
    return carrier


def claimed_amount(goods: Decimal, postage: Decimal) -> Decimal:
    """What the carrier is asked for: the goods (a reship's, or a lost parcel's value) and the postage."""
    total = goods + postage
    if total <= ZERO:
        raise PolicyRefusal(
            CARRIER_CLAIM,
            "索赔金额须大于 0 元。",
            "A claim must be for more than 0.00 CNY.",
            {"goods_amount": str(goods), "postage_amount": str(postage)},
        )
    return total


def move(status: ClaimStatus, action: ClaimAction) -> ClaimStatus:
    allowed, to = MOVES[action]
    if status not in allowed:
        raise CaseConflict(
            "invalid_transition",
            f"a claim that is {status} cannot take {action!s}",
            claim_status=str(status),
            allowed_from=sorted(allowed),
        )
    return to


def check_amount(action: ClaimAction, amount: Decimal, ceiling: Decimal) -> Decimal:
    """The carrier accepts at most what was claimed, and pays at most what it accepted, more than nothing."""
    if ZERO < amount <= ceiling:
        return amount
    accepting = action is ClaimAction.accept
    what_zh, what_en = ("索赔金额", "claimed") if accepting else ("快递认可的金额", "accepted")
    raise PolicyRefusal(
        CARRIER_CLAIM,
        f"金额须大于 0 元且不超过{what_zh} {ceiling} 元。",
        f"The amount must be more than 0.00 and at most the {what_en} {ceiling} CNY.",
        {"amount": str(amount), "ceiling": str(ceiling)},
    )
