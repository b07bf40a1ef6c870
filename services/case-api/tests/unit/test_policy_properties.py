"""Properties of the policy engine (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from case_api.domain.model import (
    CaseLine,
    CaseRequest,
    LineHistory,
    Order,
    OrderLine,
    PolicyRefusal,
    Reason,
    Remedy,
)
from case_api.domain.policy import (
    allocate,
    evaluate,
    price_difference,
    remaining_allowance,
    window_close,
)
from hypothesis import given
from hypothesis import strategies as st

SHANGHAI = ZoneInfo("Asia/Shanghai")
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
cents = st.integers(min_value=0, max_value=1_000_000).map(lambda c: Decimal(c) / 100)


class TestWindowProperties:
    """R-7D-WINDOW."""

    @given(instants)
    def test_closes_at_shanghai_midnight_168_to_192_hours_later(self, signed_at: datetime) -> None:
        closes = window_close(signed_at)
        local = closes.astimezone(SHANGHAI)
        assert local.time() == time(0)
        # 168 h after the next midnight: a sign-off exactly at 00:00:00 gets the full 192 h.
        assert timedelta(hours=168) < closes - signed_at <= timedelta(hours=192)
        assert local.date() == signed_at.astimezone(SHANGHAI).date() + timedelta(days=8)

    @given(instants, st.integers(min_value=0, max_value=86_399))
    def test_same_shanghai_day_same_close(self, signed_at: datetime, seconds: int) -> None:
        day_start = datetime.combine(signed_at.astimezone(SHANGHAI).date(), time(0), tzinfo=SHANGHAI)
        assert window_close(day_start + timedelta(seconds=seconds)) == window_close(signed_at)


class TestMoneyProperties:
    @given(cents, cents, st.integers(min_value=1, max_value=50))
    def test_price_difference_never_negative(self, old: Decimal, new: Decimal, quantity: int) -> None:
        difference = price_difference(old, new, quantity)  # R-PRICE-PROTECT
        assert difference >= 0
        assert difference == max(Decimal(0), (old - new) * quantity)

    @given(st.lists(cents, min_size=1, max_size=5), st.data())
    def test_allocation_sums_and_respects_weights(self, weights: list[Decimal], data: st.DataObject) -> None:
        total_weight = sum(weights, Decimal(0))
        total = data.draw(st.integers(min_value=1, max_value=max(1, int(total_weight * 100)))) / Decimal(100)
        keyed = {f"L{i}": weight for i, weight in enumerate(weights)}
        shares = allocate(total, keyed)
        assert sum(shares.values()) == total
        if total <= total_weight:
            assert all(shares[key] <= keyed[key] for key in keyed)
        assert all(share == share.quantize(Decimal("0.01")) for share in shares.values())


class TestCapProperty:
    """R-COMP-CAP: whatever the request, an accepted decision never takes more than the allowance."""

    @given(
        paid=st.integers(min_value=1, max_value=100_000).map(lambda c: Decimal(c) / 100),
        compensated=cents,
        quantity=st.integers(min_value=1, max_value=5),
        remedy=st.sampled_from([Remedy.RETURN_REFUND, Remedy.RESHIP, Remedy.CASHBACK, Remedy.REFUND_ONLY]),
        amount=st.none() | st.integers(min_value=1, max_value=200_000).map(lambda c: Decimal(c) / 100),
        data=st.data(),
    )
    def test_never_past_the_cap(
        self,
        paid: Decimal,
        compensated: Decimal,
        quantity: int,
        remedy: Remedy,
        amount: Decimal | None,
        data: st.DataObject,
    ) -> None:
        signed = datetime(2026, 11, 3, 7, 20, tzinfo=UTC)
        order = Order(
            "O1", "S1", "B1", signed - timedelta(days=2),
            (OrderLine("L1", "SKU-1", quantity, paid, paid),),
            shipped_at=signed - timedelta(days=1), signed_at=signed,
        )  # fmt: skip
        history = {"L1": LineHistory("L1", compensated=compensated)}
        case_quantity = data.draw(st.integers(min_value=1, max_value=quantity))
        request = CaseRequest(
            remedy,
            Reason.DAMAGED,
            (CaseLine("L1", case_quantity),),
            amount=None if remedy is Remedy.RESHIP else amount,
        )
        try:
            decision = evaluate(order, request, history, signed + timedelta(days=30))
        except PolicyRefusal as refusal:
            assert refusal.rule in {"R-COMP-CAP", "R-REFUND-VERIFY", "R-CASHBACK", "R-RO-RECEIVED"}
            return
        assert decision.line_amounts["L1"] <= remaining_allowance(order, "L1", history)
        assert decision.line_amounts["L1"] >= 0
