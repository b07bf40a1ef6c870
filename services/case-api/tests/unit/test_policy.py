"""The policy engine, rule by rule (POLICY.md). Each class names the rule it pins down."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from case_api.domain.model import (
    CARRIER,
    EVIDENCE_REQUIRED,
    SUBJECTIVE,
    CaseLine,
    CaseRequest,
    Decision,
    InvalidRequest,
    LineHistory,
    Order,
    OrderLine,
    PolicyRefusal,
    Reason,
    Remedy,
    Stage,
)
from case_api.domain.policy import (
    evaluate,
    missing_evidence,
    price_difference,
    remaining_allowance,
    stage,
    window_close,
)

D = Decimal
SECOND = timedelta(seconds=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


PAID = at("2026-11-01T10:00:00+08:00")
SHIPPED = at("2026-11-02T09:00:00+08:00")
SIGNED = at("2026-11-03T15:20:00+08:00")
CLOSE = at("2026-11-11T00:00:00+08:00")  # R-7D-WINDOW for SIGNED
PP_CLOSE = at("2026-11-09T00:00:00+08:00")  # R-PRICE-PROTECT for PAID
DURING = at("2026-11-05T12:00:00+08:00")
LATER = at("2026-12-01T12:00:00+08:00")

_UNSET: Any = object()


def make_line(
    line_id: str = "L1",
    sku: str = "SKU-1",
    quantity: int = 2,
    unit_price: str = "100.00",
    paid_amount: str = "180.00",
    no_reason_return: bool = True,
    category: str | None = None,
) -> OrderLine:
    return OrderLine(line_id, sku, quantity, D(unit_price), D(paid_amount), no_reason_return, category)


def make_order(
    *lines: OrderLine,
    order_id: str = "O1",
    buyer_id: str = "B1",
    paid_at: datetime = PAID,
    shipped_at: datetime | None = SHIPPED,
    signed_at: datetime | None = SIGNED,
    shipping_fee: str = "10.00",
) -> Order:
    return Order(
        order_id=order_id,
        shop_id="S1",
        buyer_id=buyer_id,
        paid_at=paid_at,
        lines=lines or (make_line(),),
        shipping_fee=D(shipping_fee),
        shipped_at=shipped_at,
        signed_at=signed_at,
    )


UNSHIPPED_ORDER = make_order(shipped_at=None, signed_at=None)
SHIPPED_ORDER = make_order(signed_at=None)
RECEIVED_ORDER = make_order()


def ask(
    remedy: Remedy,
    reason: Reason,
    lines: tuple[tuple[str, int], ...] = (("L1", 1),),
    amount: str | None = None,
    **extra: Any,
) -> CaseRequest:
    return CaseRequest(
        remedy=remedy,
        reason=reason,
        lines=tuple(CaseLine(line_id, quantity) for line_id, quantity in lines),
        amount=None if amount is None else D(amount),
        **extra,
    )


def history(**by_line: dict[str, Any]) -> dict[str, LineHistory]:
    return {line_id: LineHistory(line_id=line_id, **fields) for line_id, fields in by_line.items()}


def refusal(
    order: Order, request: CaseRequest, now: datetime, hist: dict[str, LineHistory] | None = None
) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        evaluate(order, request, hist or {}, now)
    refused = caught.value
    assert refused.message_zh and refused.message_en  # always courteous, in both languages
    assert all(isinstance(value, str) for value in refused.facts.values())
    return refused


def decide(
    order: Order, request: CaseRequest, now: datetime, hist: dict[str, LineHistory] | None = None
) -> Decision:
    return evaluate(order, request, hist or {}, now)


class TestWindowClose:
    """R-7D-WINDOW: 00:00 Asia/Shanghai of the day after sign-off, plus exactly 168 hours."""

    def test_manual_example(self) -> None:
        assert window_close(SIGNED) == CLOSE
        assert window_close(SIGNED).isoformat() == "2026-11-11T00:00:00+08:00"

    def test_sign_off_at_midnight_starts_counting_the_next_day(self) -> None:
        closes = window_close(at("2026-11-03T00:00:00+08:00"))
        assert closes == at("2026-11-11T00:00:00+08:00")
        assert closes - at("2026-11-03T00:00:00+08:00") == timedelta(hours=192)

    def test_sign_off_one_second_before_midnight(self) -> None:
        closes = window_close(at("2026-11-03T23:59:59+08:00"))
        assert closes == at("2026-11-11T00:00:00+08:00")
        assert closes - at("2026-11-03T23:59:59+08:00") == timedelta(hours=168, seconds=1)

    def test_utc_stored_sign_off_uses_the_shanghai_date(self) -> None:
        # 16:30 UTC on the 3rd is 00:30 on the 4th in Shanghai: the window opens on the 5th.
        assert window_close(at("2026-11-03T16:30:00+00:00")) == at("2026-11-12T00:00:00+08:00")
        # 15:59:59 UTC is still the 3rd in Shanghai (23:59:59).
        assert window_close(at("2026-11-03T15:59:59+00:00")) == at("2026-11-11T00:00:00+08:00")

    def test_across_a_month_end(self) -> None:
        assert window_close(at("2026-01-30T20:00:00+08:00")) == at("2026-02-07T00:00:00+08:00")
        assert window_close(at("2026-02-27T08:00:00+08:00")) == at("2026-03-07T00:00:00+08:00")

    def test_across_a_year_end(self) -> None:
        assert window_close(at("2026-12-28T10:00:00+08:00")) == at("2027-01-05T00:00:00+08:00")
        # 2026-12-31T17:00Z is already 2027-01-01 in Shanghai.
        assert window_close(at("2026-12-31T17:00:00+00:00")) == at("2027-01-09T00:00:00+08:00")

    def test_returned_in_shanghai_time(self) -> None:
        assert window_close(at("2026-11-03T07:20:00+00:00")).utcoffset() == timedelta(hours=8)

    def test_naive_datetimes_are_a_bug(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            window_close(datetime(2026, 11, 3, 15, 20))


class TestStage:
    def test_stages(self) -> None:
        assert stage(UNSHIPPED_ORDER) is Stage.UNSHIPPED
        assert stage(SHIPPED_ORDER) is Stage.SHIPPED
        assert stage(RECEIVED_ORDER) is Stage.RECEIVED

    def test_naive_order_times_are_refused(self) -> None:
        with pytest.raises(ValueError):
            make_order(paid_at=datetime(2026, 11, 1, 10))


class TestReasonSets:
    def test_size_is_subjective_and_carrier_reasons_are_not(self) -> None:
        assert {Reason.NO_REASON, Reason.SIZE} == SUBJECTIVE
        assert not SUBJECTIVE & CARRIER
        assert Reason.SIZE.is_subjective and Reason.DAMAGED.is_carrier

    def test_evidence_table(self) -> None:  # R-EVIDENCE
        assert EVIDENCE_REQUIRED[Reason.DAMAGED] == 3 and EVIDENCE_REQUIRED[Reason.SIZE] == 1
        assert Reason.NO_REASON not in EVIDENCE_REQUIRED


class TestSevenDayWindow:
    """R-7D-WINDOW and R-BEYOND-7D on subjective returns and exchanges."""

    @pytest.mark.parametrize("remedy", [Remedy.RETURN_REFUND, Remedy.EXCHANGE])
    @pytest.mark.parametrize("reason", [Reason.NO_REASON, Reason.SIZE])
    def test_one_second_before_the_close_is_accepted(self, remedy: Remedy, reason: Reason) -> None:
        decision = decide(RECEIVED_ORDER, ask(remedy, reason, images=1), CLOSE - SECOND)
        assert decision.deadline == CLOSE
        assert "R-7D-WINDOW" in decision.rules and "R-RESALEABLE" in decision.rules

    @pytest.mark.parametrize("remedy", [Remedy.RETURN_REFUND, Remedy.EXCHANGE])
    @pytest.mark.parametrize("now", [CLOSE, CLOSE + SECOND, LATER])
    def test_at_and_after_the_close_is_refused_politely(self, remedy: Remedy, now: datetime) -> None:
        refused = refusal(RECEIVED_ORDER, ask(remedy, Reason.NO_REASON), now)
        assert refused.rule == "R-BEYOND-7D"
        assert refused.facts["deadline"] == "2026-11-11T00:00:00+08:00"
        assert refused.facts["signed_at"] == "2026-11-03T15:20:00+08:00"
        assert refused.facts["returnable_for_subjective_reasons"] == "false"
        assert refused.deadline == CLOSE
        assert "2026-11-11" in refused.message_zh and "2026-11-11" in refused.message_en

    def test_size_is_subjective_too(self) -> None:
        assert refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.SIZE), CLOSE).rule == "R-BEYOND-7D"

    def test_quality_returns_have_no_seven_day_limit(self) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, images=3), LATER)
        assert decision.deadline is None
        assert decision.amount == D("90.00")

    def test_before_sign_off_there_is_no_window(self) -> None:
        # R-RR-UNRECEIVED: refused at the door or intercepted, whenever.
        decision = decide(SHIPPED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), LATER)
        assert decision.deadline is None
        assert decision.rules[0] == "R-RR-UNRECEIVED"

    def test_sign_off_stored_in_utc_on_another_shanghai_date(self) -> None:
        order = make_order(signed_at=at("2026-11-03T16:30:00+00:00"))  # 2026-11-04 00:30 in Shanghai
        assert decide(order, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), CLOSE + SECOND).deadline == at(
            "2026-11-12T00:00:00+08:00"
        )
        assert refusal(order, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), at("2026-11-12T00:00:00+08:00"))

    def test_now_in_utc_is_compared_as_an_instant(self) -> None:
        just_before = (CLOSE - SECOND).astimezone(UTC)
        assert decide(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), just_before)
        assert refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), CLOSE.astimezone(UTC))


class TestSevenDayExcluded:
    """R-7D-EXCLUDED: excluded categories refuse no_reason, not carrier or quality reasons."""

    ORDER = make_order(make_line(no_reason_return=False, category="underwear"))

    @pytest.mark.parametrize("remedy", [Remedy.RETURN_REFUND, Remedy.EXCHANGE])
    def test_no_reason_is_refused_within_the_window(self, remedy: Remedy) -> None:
        refused = refusal(self.ORDER, ask(remedy, Reason.NO_REASON), DURING)
        assert refused.rule == "R-7D-EXCLUDED"
        assert refused.facts["category"] == "underwear"

    @pytest.mark.parametrize(
        ("remedy", "reason"),
        [
            (Remedy.RETURN_REFUND, Reason.WORKMANSHIP),
            (Remedy.RETURN_REFUND, Reason.DAMAGED),
            (Remedy.EXCHANGE, Reason.WRONG_ITEM),
            (Remedy.EXCHANGE, Reason.SIZE),
        ],
    )
    def test_carrier_quality_and_size_reasons_are_allowed(self, remedy: Remedy, reason: Reason) -> None:
        assert decide(self.ORDER, ask(remedy, reason, images=3), DURING).remedy is remedy

    def test_before_sign_off_the_parcel_can_still_be_refused(self) -> None:
        order = make_order(make_line(no_reason_return=False), signed_at=None)
        assert decide(order, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), DURING).stage is Stage.SHIPPED


class TestExchangeOnce:
    """R-EXCHANGE-ONCE: one exchange per line; the replacement has its own 7 days for a return."""

    REPLACEMENT_SIGNED = at("2026-11-20T18:00:00+08:00")
    REPLACEMENT_CLOSE = at("2026-11-28T00:00:00+08:00")
    EXCHANGED = history(L1={"exchanged": True, "replacement_signed_at": REPLACEMENT_SIGNED})

    @pytest.mark.parametrize("reason", [Reason.NO_REASON, Reason.WORKMANSHIP, Reason.WRONG_ITEM])
    def test_second_exchange_is_refused(self, reason: Reason) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.EXCHANGE, reason), DURING, self.EXCHANGED)
        assert refused.rule == "R-EXCHANGE-ONCE"
        assert refused.facts["return_deadline"] == "2026-11-28T00:00:00+08:00"

    def test_other_lines_can_still_be_exchanged(self) -> None:
        order = make_order(make_line("L1"), make_line("L2", sku="SKU-2"))
        decision = decide(order, ask(Remedy.EXCHANGE, Reason.NO_REASON, (("L2", 1),)), DURING, self.EXCHANGED)
        assert decision.remedy is Remedy.EXCHANGE

    @pytest.mark.parametrize("reason", [Reason.NO_REASON, Reason.WORKMANSHIP])
    def test_replacement_return_within_its_own_seven_days(self, reason: Reason) -> None:
        # The original window closed on 11-11; the replacement's runs to 11-28 00:00.
        now = self.REPLACEMENT_CLOSE - SECOND
        decision = decide(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, reason, images=3), now, self.EXCHANGED)
        assert decision.deadline == self.REPLACEMENT_CLOSE
        assert decision.rules[:2] == ("R-EXCHANGE-ONCE", "R-RR-RECEIVED")
        assert "R-RESALEABLE" in decision.rules

    @pytest.mark.parametrize("reason", [Reason.NO_REASON, Reason.WORKMANSHIP])
    def test_after_the_replacements_seven_days_neither_return_nor_exchange(self, reason: Reason) -> None:
        refused = refusal(
            RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, reason), self.REPLACEMENT_CLOSE, self.EXCHANGED
        )
        assert refused.rule == "R-EXCHANGE-ONCE"
        assert refused.facts["deadline"] == "2026-11-28T00:00:00+08:00"
        assert refused.facts["replacement_signed_at"] == "2026-11-20T18:00:00+08:00"

    def test_replacement_not_yet_signed_for(self) -> None:
        in_transit = history(L1={"exchanged": True})
        refused = refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP), DURING, in_transit)
        assert refused.rule == "R-EXCHANGE-ONCE"


class TestExchangeSevenDays:
    """R-EXCHANGE-7D: an exchange is requested within the 7-day window from sign-off, whatever the reason."""

    def test_quality_exchange_inside_the_window(self) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.EXCHANGE, Reason.WORKMANSHIP, images=3), CLOSE - SECOND)
        assert decision.deadline == CLOSE
        assert decision.amount is None and decision.line_amounts == {"L1": D("0.00")}
        assert not decision.needs_retention

    def test_quality_exchange_after_the_window(self) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.EXCHANGE, Reason.WORKMANSHIP), CLOSE)
        assert refused.rule == "R-EXCHANGE-7D"
        assert refused.facts["deadline"] == "2026-11-11T00:00:00+08:00"

    def test_before_sign_off(self) -> None:
        assert refusal(SHIPPED_ORDER, ask(Remedy.EXCHANGE, Reason.SIZE), DURING).rule == "R-EXCHANGE-7D"
        assert refusal(UNSHIPPED_ORDER, ask(Remedy.EXCHANGE, Reason.SIZE), DURING).rule == "R-RO-UNSHIPPED"

    @pytest.mark.parametrize(
        "reason", [Reason.PRICE_DROP, Reason.SHIPPING_FEE, Reason.EMPTY_PARCEL, Reason.MISSING_ITEM]
    )
    def test_reasons_an_exchange_cannot_serve(self, reason: Reason) -> None:
        assert refusal(RECEIVED_ORDER, ask(Remedy.EXCHANGE, reason), DURING).rule == "R-REMEDY-REASON"

    def test_exchange_takes_no_amount(self) -> None:
        with pytest.raises(InvalidRequest):
            evaluate(RECEIVED_ORDER, ask(Remedy.EXCHANGE, Reason.SIZE, amount="10.00"), {}, DURING)


class TestPriceProtect:
    """R-PRICE-PROTECT: within 7 days of purchase, after receipt, against a cheaper new order."""

    ORDER = make_order(make_line(quantity=2, unit_price="100.00", paid_amount="200.00"))

    @staticmethod
    def new_order(unit_price: str = "80.00", **overrides: Any) -> Order:
        fields: dict[str, Any] = {
            "order_id": "O2",
            "paid_at": at("2026-11-04T09:00:00+08:00"),
            "signed_at": None,
            "shipped_at": None,
        } | overrides
        sku = fields.pop("sku", "SKU-1")
        return make_order(
            make_line("N1", sku=sku, quantity=1, unit_price=unit_price, paid_amount=unit_price), **fields
        )

    def protect(self, quantity: int = 1, **extra: Any) -> CaseRequest:
        extra.setdefault("new_order", self.new_order())
        return ask(Remedy.PRICE_PROTECTION, Reason.PRICE_DROP, (("L1", quantity),), **extra)

    def test_difference_times_case_quantity(self) -> None:
        decision = decide(self.ORDER, self.protect(quantity=2), DURING)
        assert decision.amount == D("40.00")
        assert decision.line_amounts == {"L1": D("40.00")}
        assert decision.deadline == PP_CLOSE
        assert {"R-PRICE-PROTECT", "R-CASHBACK", "R-COMP-CAP"} <= set(decision.rules)
        assert not decision.needs_retention

    def test_difference_is_never_negative(self) -> None:
        assert price_difference(D("80.00"), D("100.00"), 3) == D("0.00")
        assert price_difference(D("100.00"), D("79.99"), 3) == D("60.03")

    @pytest.mark.parametrize("new_price", ["100.00", "120.00"])
    def test_no_lower_price_is_refused(self, new_price: str) -> None:
        refused = refusal(self.ORDER, self.protect(new_order=self.new_order(new_price)), DURING)
        assert refused.rule == "R-PRICE-PROTECT"
        assert refused.facts["difference"] == "0.00"

    def test_one_second_before_and_after_the_window(self) -> None:
        assert decide(self.ORDER, self.protect(), PP_CLOSE - SECOND).amount == D("20.00")
        refused = refusal(self.ORDER, self.protect(), PP_CLOSE)
        assert refused.rule == "R-PRICE-PROTECT"
        assert refused.facts["deadline"] == "2026-11-09T00:00:00+08:00"
        assert refused.deadline == PP_CLOSE

    def test_needs_receipt(self) -> None:
        order = make_order(make_line(), signed_at=None)
        assert refusal(order, self.protect(), DURING).rule == "R-PRICE-PROTECT"

    def test_needs_a_new_order(self) -> None:
        assert refusal(self.ORDER, self.protect(new_order=None), DURING).rule == "R-PRICE-PROTECT"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"buyer_id": "someone-else"},
            {"sku": "SKU-OTHER"},
            {"paid_at": at("2026-10-30T09:00:00+08:00")},  # before the original purchase
            {"order_id": "O1"},  # the same order
        ],
    )
    def test_new_order_must_match(self, overrides: dict[str, Any]) -> None:
        refused = refusal(self.ORDER, self.protect(new_order=self.new_order(**overrides)), DURING)
        assert refused.rule == "R-PRICE-PROTECT"

    def test_new_unit_price_must_agree_with_the_new_order(self) -> None:
        assert decide(self.ORDER, self.protect(new_unit_price=D("80.00")), DURING).amount == D("20.00")
        refused = refusal(self.ORDER, self.protect(new_unit_price=D("70.00")), DURING)
        assert refused.rule == "R-PRICE-PROTECT"
        assert refused.facts["new_unit_price"] == "80.00"

    def test_explicit_amount_at_most_the_difference(self) -> None:
        assert decide(self.ORDER, self.protect(amount="15.00"), DURING).amount == D("15.00")
        assert refusal(self.ORDER, self.protect(amount="20.01"), DURING).rule == "R-REFUND-VERIFY"

    def test_price_drop_as_refund_only_follows_the_same_rule(self) -> None:
        request = ask(Remedy.REFUND_ONLY, Reason.PRICE_DROP, new_order=self.new_order())
        assert decide(self.ORDER, request, DURING).amount == D("20.00")
        assert refusal(self.ORDER, request, PP_CLOSE).rule == "R-PRICE-PROTECT"

    def test_price_drop_as_cashback_needs_the_amount(self) -> None:
        request = ask(Remedy.CASHBACK, Reason.PRICE_DROP, new_order=self.new_order())
        assert refusal(self.ORDER, request, DURING).rule == "R-CASHBACK"
        request = ask(Remedy.CASHBACK, Reason.PRICE_DROP, amount="20.00", new_order=self.new_order())
        assert decide(self.ORDER, request, DURING).amount == D("20.00")

    def test_other_reasons_are_not_price_protection(self) -> None:
        request = ask(Remedy.PRICE_PROTECTION, Reason.OTHER, new_order=self.new_order())
        assert refusal(self.ORDER, request, DURING).rule == "R-REMEDY-REASON"


class TestCompensationCap:
    """R-COMP-CAP: refunds + price protection + cashback + reshipped value ≤ what was paid for the line."""

    ORDER = make_order(make_line(quantity=2, unit_price="100.00", paid_amount="180.00"))

    def test_remaining_allowance(self) -> None:
        assert remaining_allowance(self.ORDER, "L1", {}) == D("180.00")
        spent = history(L1={"compensated": D("167.70"), "shipping_reimbursed": D("12.00")})
        assert remaining_allowance(self.ORDER, "L1", spent) == D("12.30")
        assert remaining_allowance(self.ORDER, "L1", history(L1={"compensated": D("200.00")})) == D("0.00")

    def test_across_price_protection_cashback_reship_and_refund(self) -> None:
        # Price protection 20.00, then a cashback of 30.00, then one unit reshipped (90.00): 140.00 taken.
        granted = D("0.00")
        new_order = TestPriceProtect.new_order()
        requests = [
            ask(Remedy.PRICE_PROTECTION, Reason.PRICE_DROP, new_order=new_order),
            ask(Remedy.CASHBACK, Reason.OTHER, amount="30.00"),
            ask(Remedy.RESHIP, Reason.DAMAGED, images=3),
        ]
        for request in requests:
            decision = decide(self.ORDER, request, DURING, history(L1={"compensated": granted}))
            granted += decision.line_amounts["L1"]
        assert granted == D("140.00")

        spent = history(L1={"compensated": granted})
        refused = refusal(self.ORDER, ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP), DURING, spent)
        assert refused.rule == "R-COMP-CAP"
        assert refused.facts["remaining_allowance"] == "40.00"
        assert refused.facts["requested_amount"] == "90.00"
        assert refused.facts["line_id"] == "L1"
        assert "40.00" in refused.message_zh and "40.00" in refused.message_en

        # The customer may ask again for what remains, to the cent.
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, amount="40.00")
        assert decide(self.ORDER, request, DURING, spent).amount == D("40.00")
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, amount="40.01")
        assert refusal(self.ORDER, request, DURING, spent).rule == "R-COMP-CAP"

    def test_cashback_beyond_the_allowance(self) -> None:
        spent = history(L1={"compensated": D("167.70")})
        refused = refusal(self.ORDER, ask(Remedy.CASHBACK, Reason.OTHER, amount="12.31"), DURING, spent)
        assert refused.rule == "R-COMP-CAP"
        assert refused.facts["remaining_allowance"] == "12.30"
        assert decide(self.ORDER, ask(Remedy.CASHBACK, Reason.OTHER, amount="12.30"), DURING, spent)

    def test_reship_value_counts(self) -> None:
        spent = history(L1={"compensated": D("100.00")})
        refused = refusal(self.ORDER, ask(Remedy.RESHIP, Reason.DAMAGED, (("L1", 2),)), DURING, spent)
        assert refused.rule == "R-COMP-CAP"
        assert refused.facts["requested_amount"] == "180.00"

    def test_cap_is_per_line_and_facts_list_each_line(self) -> None:
        order = make_order(make_line("L1"), make_line("L2", sku="SKU-2"))
        spent = history(L2={"compensated": D("150.00")})
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, (("L1", 1), ("L2", 1)))
        refused = refusal(order, request, DURING, spent)
        assert refused.facts["line_id"] == "L2"
        assert refused.facts["remaining_allowance.L1"] == "180.00"
        assert refused.facts["remaining_allowance.L2"] == "30.00"
        assert refused.facts["remaining_allowance_total"] == "210.00"

    def test_cashback_spreads_over_lines_by_what_they_can_still_take(self) -> None:
        order = make_order(make_line("L1"), make_line("L2", sku="SKU-2"))
        spent = history(L2={"compensated": D("170.00")})
        request = ask(Remedy.CASHBACK, Reason.OTHER, (("L1", 1), ("L2", 1)), amount="190.00")
        decision = decide(order, request, DURING, spent)
        assert decision.line_amounts == {"L1": D("180.00"), "L2": D("10.00")}
        request = ask(Remedy.CASHBACK, Reason.OTHER, (("L1", 1), ("L2", 1)), amount="190.01")
        assert refusal(order, request, DURING, spent).facts["remaining_allowance_total"] == "190.00"

    def test_shipping_reimbursement_is_outside_the_cap(self) -> None:
        spent = history(L1={"compensated": D("180.00"), "shipping_reimbursed": D("2.00")})
        decision = decide(self.ORDER, ask(Remedy.CASHBACK, Reason.SHIPPING_FEE, amount="8.00"), DURING, spent)
        assert decision.amount == D("8.00")
        assert decision.line_amounts == {"L1": D("0.00")}
        assert decision.shipping_amounts == {"L1": D("8.00")}

    def test_postage_is_bounded_by_the_orders_fee_and_owed_only_without_insurance(self) -> None:
        """R-POSTAGE."""
        spent = history(L1={"shipping_reimbursed": D("2.00")})
        over = refusal(self.ORDER, ask(Remedy.CASHBACK, Reason.SHIPPING_FEE, amount="8.01"), DURING, spent)
        assert (over.rule, over.facts["remaining_allowance"]) == ("R-POSTAGE", "8.00")
        insured = replace(self.ORDER, shipping_insurance=True)
        refused = refusal(insured, ask(Remedy.CASHBACK, Reason.SHIPPING_FEE, amount="1.00"), DURING)
        assert refused.rule == "R-POSTAGE" and "运费险" in refused.message_zh

    def test_shipping_fee_refund_is_bounded_by_the_orders_fee(self) -> None:
        assert decide(self.ORDER, ask(Remedy.REFUND_ONLY, Reason.SHIPPING_FEE, amount="10.00"), DURING)
        refused = refusal(self.ORDER, ask(Remedy.REFUND_ONLY, Reason.SHIPPING_FEE, amount="10.01"), DURING)
        assert refused.rule == "R-POSTAGE"
        assert refused.facts["remaining_allowance"] == "10.00"
        spent = history(L1={"shipping_reimbursed": D("4.00")})
        request = ask(Remedy.REFUND_ONLY, Reason.SHIPPING_FEE, amount="6.01")
        assert refusal(self.ORDER, request, DURING, spent).facts["remaining_allowance"] == "6.00"


class TestRefundOnly:
    """R-RO-UNSHIPPED, R-RO-SHIPPED, R-RO-RECEIVED."""

    def test_unshipped_refunds_the_goods_after_retention(self) -> None:
        decision = decide(UNSHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.NO_REASON, (("L1", 2),)), DURING)
        assert decision.stage is Stage.UNSHIPPED
        assert decision.amount == D("180.00")
        assert decision.needs_retention
        assert decision.rules[0] == "R-RO-UNSHIPPED" and "R-RETENTION" in decision.rules

    def test_shipped_refunds_after_retention_and_intercept(self) -> None:
        decision = decide(SHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.OTHER), DURING)
        assert decision.rules[0] == "R-RO-SHIPPED"
        assert decision.needs_retention and decision.amount == D("90.00")

    def test_before_receipt_an_explicit_amount_is_at_most_the_goods_value(self) -> None:
        assert decide(SHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.OTHER, amount="50.00"), DURING)
        refused = refusal(SHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.OTHER, amount="90.01"), DURING)
        assert refused.rule == "R-REFUND-VERIFY"
        assert refused.facts["maximum_amount"] == "90.00"

    @pytest.mark.parametrize(
        "reason",
        [Reason.WORKMANSHIP, Reason.OTHER, Reason.DAMAGED, Reason.MISSING_ITEM, Reason.EMPTY_PARCEL],
    )
    def test_received_allowed_reasons_take_an_agreed_amount(self, reason: Reason) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.REFUND_ONLY, reason, amount="25.00", images=3), LATER)
        assert decision.amount == D("25.00")
        assert decision.rules[0] == "R-RO-RECEIVED"
        assert not decision.needs_retention

    @pytest.mark.parametrize("reason", [Reason.NO_REASON, Reason.SIZE, Reason.USAGE, Reason.WRONG_ITEM])
    def test_received_in_normal_condition_is_refused_with_guidance(self, reason: Reason) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.REFUND_ONLY, reason, amount="25.00"), DURING)
        assert refused.rule == "R-RO-RECEIVED"
        assert refused.facts["suggested_remedy"] == "return_refund"
        assert "退货退款" in refused.message_zh and "return and refund" in refused.message_en

    @pytest.mark.parametrize("amount", [None, "0.00", "-1.00"])
    def test_received_needs_a_positive_amount(self, amount: str | None) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.REFUND_ONLY, Reason.WORKMANSHIP, amount=amount), DURING)
        assert refused.rule == "R-RO-RECEIVED"

    def test_received_compensation_at_most_the_goods_value(self) -> None:
        request = ask(Remedy.REFUND_ONLY, Reason.WORKMANSHIP, amount="90.01")
        assert refusal(RECEIVED_ORDER, request, DURING).rule == "R-REFUND-VERIFY"


class TestReturnRefund:
    """R-RR-RECEIVED and R-RR-UNRECEIVED; amounts pro rata of the line's paid amount."""

    def test_unshipped_is_guided_to_refund_only(self) -> None:
        refused = refusal(UNSHIPPED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), DURING)
        assert refused.rule == "R-RO-UNSHIPPED"
        assert refused.facts["suggested_remedy"] == "refund_only"

    def test_unreceived_any_reason_with_retention(self) -> None:
        decision = decide(SHIPPED_ORDER, ask(Remedy.RETURN_REFUND, Reason.LOST), DURING)
        assert decision.rules[0] == "R-RR-UNRECEIVED" and decision.needs_retention

    def test_received_carrier_reason_with_retention(self) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.WRONG_ITEM, images=3), LATER)
        assert decision.rules[0] == "R-RR-RECEIVED" and decision.needs_retention

    @pytest.mark.parametrize("reason", [Reason.LOST, Reason.EMPTY_PARCEL, Reason.PRICE_DROP])
    def test_nothing_to_send_back(self, reason: Reason) -> None:
        assert refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, reason), DURING).rule == "R-REMEDY-REASON"

    @pytest.mark.parametrize(
        ("quantity", "paid", "case_quantity", "expected"),
        [
            (3, "100.00", 1, "33.33"),
            (3, "100.00", 2, "66.67"),
            (2, "100.01", 1, "50.01"),
            (3, "99.99", 3, "99.99"),
        ],
    )
    def test_pro_rata_rounded_half_up(
        self, quantity: int, paid: str, case_quantity: int, expected: str
    ) -> None:
        order = make_order(make_line(quantity=quantity, paid_amount=paid))
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, (("L1", case_quantity),))
        assert decide(order, request, DURING).amount == D(expected)

    def test_pro_rata_rounding_never_blocks_the_last_unit(self) -> None:  # R-COMP-CAP
        order = make_order(make_line(quantity=2, paid_amount="100.01"))
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP)
        first = decide(order, request, DURING)
        assert first.amount == D("50.01")
        second = decide(order, request, DURING, history(L1={"compensated": first.amount}))
        assert second.amount == D("50.00")
        # A real shortfall is still refused.
        refused = refusal(order, request, DURING, history(L1={"compensated": D("60.00")}))
        assert refused.facts["remaining_allowance"] == "40.01"

    def test_amounts_over_several_lines(self) -> None:
        order = make_order(make_line("L1"), make_line("L2", sku="SKU-2", quantity=1, paid_amount="59.90"))
        decision = decide(order, ask(Remedy.RETURN_REFUND, Reason.NO_REASON, (("L1", 2), ("L2", 1))), DURING)
        assert decision.line_amounts == {"L1": D("180.00"), "L2": D("59.90")}
        assert decision.amount == D("239.90")

    def test_explicit_amount_not_above_the_derived_amount(self) -> None:
        assert decide(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON, amount="80.00"), DURING)
        request = ask(Remedy.RETURN_REFUND, Reason.NO_REASON, amount="90.01")
        assert refusal(RECEIVED_ORDER, request, DURING).rule == "R-REFUND-VERIFY"
        request = ask(Remedy.RETURN_REFUND, Reason.NO_REASON, amount="0.00")
        assert refusal(RECEIVED_ORDER, request, DURING).rule == "R-REFUND-VERIFY"


class TestReship:
    """R-RESHIP: non-subjective parcel problems only."""

    @pytest.mark.parametrize(
        "reason", [Reason.DAMAGED, Reason.MISSING_ITEM, Reason.EMPTY_PARCEL, Reason.FALSE_DELIVERY]
    )
    def test_after_sign_off(self, reason: Reason) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.RESHIP, reason, images=3), LATER)
        assert decision.amount is None  # no money moves
        assert decision.line_amounts == {"L1": D("90.00")}  # but the goods' value counts (R-COMP-CAP)
        assert decision.rules[0] == "R-RESHIP" and not decision.needs_retention

    @pytest.mark.parametrize("reason", [Reason.LOST, Reason.NO_TRACKING_UPDATE])
    def test_an_undelivered_parcel_before_sign_off(self, reason: Reason) -> None:
        """R-LOST, R-NO-UPDATE: a parcel that stopped moving is reshipped, never one already signed for."""
        assert decide(SHIPPED_ORDER, ask(Remedy.RESHIP, reason), DURING).line_amounts == {"L1": D("90.00")}
        assert refusal(RECEIVED_ORDER, ask(Remedy.RESHIP, reason), DURING).rule == "R-RESHIP"
        assert refusal(UNSHIPPED_ORDER, ask(Remedy.RESHIP, reason), DURING).rule == "R-RESHIP"

    def test_damaged_before_sign_off(self) -> None:
        assert refusal(SHIPPED_ORDER, ask(Remedy.RESHIP, Reason.DAMAGED), DURING).rule == "R-RESHIP"

    @pytest.mark.parametrize(
        "reason", [Reason.NO_REASON, Reason.SIZE, Reason.WORKMANSHIP, Reason.WRONG_ITEM, Reason.SHIPPING_FEE]
    )
    def test_other_reasons_are_refused(self, reason: Reason) -> None:
        assert refusal(RECEIVED_ORDER, ask(Remedy.RESHIP, reason), DURING).rule == "R-RESHIP"

    def test_reship_takes_no_amount(self) -> None:
        with pytest.raises(InvalidRequest):
            evaluate(RECEIVED_ORDER, ask(Remedy.RESHIP, Reason.DAMAGED, amount="1.00"), {}, DURING)


class TestCashback:
    """R-CASHBACK: an agreed amount greater than zero."""

    @pytest.mark.parametrize("amount", [None, "0.00", "-5.00"])
    def test_needs_a_positive_amount(self, amount: str | None) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.CASHBACK, Reason.OTHER, amount=amount), DURING)
        assert refused.rule == "R-CASHBACK"

    def test_agreed_amount(self) -> None:
        decision = decide(RECEIVED_ORDER, ask(Remedy.CASHBACK, Reason.OTHER, amount="12.34"), DURING)
        assert decision.amount == D("12.34") and decision.line_amounts == {"L1": D("12.34")}
        assert decision.rules[0] == "R-CASHBACK"


class TestEvidence:
    """R-EVIDENCE: counted, never refused; a video satisfies the requirement."""

    @pytest.mark.parametrize(
        ("reason", "images", "videos", "missing"),
        [
            (Reason.DAMAGED, 0, 0, 3),
            (Reason.DAMAGED, 2, 0, 1),
            (Reason.DAMAGED, 3, 0, 0),
            (Reason.DAMAGED, 5, 0, 0),
            (Reason.WORKMANSHIP, 0, 1, 0),
            (Reason.SIZE, 0, 0, 1),
            (Reason.SIZE, 1, 0, 0),
            (Reason.NO_REASON, 0, 0, 0),
        ],
    )
    def test_missing_counts(self, reason: Reason, images: int, videos: int, missing: int) -> None:
        assert missing_evidence(reason, images, videos) == missing

    def test_decision_carries_the_count(self) -> None:
        request = ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, images=1)
        decision = decide(RECEIVED_ORDER, request, DURING)
        assert decision.evidence_missing == 2 and "R-EVIDENCE" in decision.rules

    def test_no_photos_of_goods_not_yet_received(self) -> None:
        decision = decide(SHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.DAMAGED), DURING)
        assert decision.evidence_missing == 0


class TestRetention:
    """R-RETENTION: subjective returns/exchanges within 7 days, refund-only before receipt, returns."""

    @pytest.mark.parametrize(
        ("order", "request_", "expected"),
        [
            (RECEIVED_ORDER, ask(Remedy.EXCHANGE, Reason.SIZE, images=1), True),
            (RECEIVED_ORDER, ask(Remedy.EXCHANGE, Reason.WORKMANSHIP, images=3), False),
            (RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), True),
            (RECEIVED_ORDER, ask(Remedy.REFUND_ONLY, Reason.WORKMANSHIP, amount="5.00"), False),
            (UNSHIPPED_ORDER, ask(Remedy.REFUND_ONLY, Reason.NO_REASON), True),
            (RECEIVED_ORDER, ask(Remedy.RESHIP, Reason.DAMAGED), False),
            (RECEIVED_ORDER, ask(Remedy.CASHBACK, Reason.SHIPPING_FEE, amount="8.00"), False),
        ],
    )
    def test_needs_retention(self, order: Order, request_: CaseRequest, expected: bool) -> None:
        decision = decide(order, request_, DURING)
        assert decision.needs_retention is expected
        assert ("R-RETENTION" in decision.rules) is expected


class TestOrderLines:
    """R-ORDER-LINE (ours) and malformed requests (InvalidRequest)."""

    def test_unknown_line(self) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON, (("L9", 1),)), DURING)
        assert refused.rule == "R-ORDER-LINE" and refused.facts["line_id"] == "L9"

    def test_more_than_ordered(self) -> None:
        refused = refusal(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON, (("L1", 3),)), DURING)
        assert refused.rule == "R-ORDER-LINE" and refused.facts["ordered_quantity"] == "2"

    @pytest.mark.parametrize(
        ("lines", "amount", "field"),
        [
            ((("L1", 0),), None, "lines.quantity"),
            ((("L1", -1),), None, "lines.quantity"),
            ((), None, "lines"),
            ((("L1", 1), ("L1", 1)), None, "lines"),
            ((("L1", 1),), "1.005", "amount"),
        ],
    )
    def test_malformed(self, lines: tuple[tuple[str, int], ...], amount: str | None, field: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            evaluate(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON, lines, amount), {}, DURING)
        assert caught.value.field == field

    def test_naive_now_is_a_bug(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            evaluate(RECEIVED_ORDER, ask(Remedy.RETURN_REFUND, Reason.NO_REASON), {}, datetime(2026, 11, 5))
