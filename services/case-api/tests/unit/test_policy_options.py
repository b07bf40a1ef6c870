"""after_sales_options: one option per line and (remedy, reason), with deadlines even when closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from case_api.domain.model import LineHistory, Option, Order, OrderLine, Reason, Remedy
from case_api.domain.policy import OPTION_KINDS, after_sales_options


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


PAID = at("2026-11-01T10:00:00+08:00")
SIGNED = at("2026-11-03T15:20:00+08:00")
CLOSE = at("2026-11-11T00:00:00+08:00")
SECOND = timedelta(seconds=1)


def make_order(
    signed_at: datetime | None = SIGNED, shipped: bool = True, no_reason_return: bool = True
) -> Order:
    return Order(
        order_id="O1",
        shop_id="S1",
        buyer_id="B1",
        paid_at=PAID,
        lines=(
            OrderLine("L1", "SKU-1", 2, Decimal("100.00"), Decimal("180.00"), no_reason_return),
            OrderLine("L2", "SKU-2", 1, Decimal("59.90"), Decimal("59.90")),
        ),
        shipped_at=at("2026-11-02T09:00:00+08:00") if shipped else None,
        signed_at=signed_at,
    )


def pick(options: list[Option], remedy: Remedy, reason: Reason | None, line_id: str = "L1") -> Option:
    [found] = [o for o in options if (o.line_id, o.remedy, o.reason) == (line_id, remedy, reason)]
    return found


class TestOptionsShape:
    def test_one_option_per_line_and_kind(self) -> None:
        options = after_sales_options(make_order(), {}, at("2026-11-05T12:00:00+08:00"))
        assert len(options) == 2 * len(OPTION_KINDS)
        kinds = {(o.remedy, o.reason) for o in options}
        assert {
            (Remedy.RETURN_REFUND, Reason.NO_REASON),
            (Remedy.EXCHANGE, Reason.NO_REASON),
            (Remedy.RETURN_REFUND, Reason.WORKMANSHIP),
            (Remedy.EXCHANGE, Reason.SIZE),
            (Remedy.REFUND_ONLY, None),
            (Remedy.RESHIP, Reason.DAMAGED),
            (Remedy.PRICE_PROTECTION, Reason.PRICE_DROP),
            (Remedy.CASHBACK, Reason.SHIPPING_FEE),
        } <= kinds
        assert all(o.message_zh and o.message_en and o.rule.startswith("R-") for o in options)


class TestOptionDeadlines:
    """R-7D-WINDOW, R-BEYOND-7D, R-EXCHANGE-7D, R-PRICE-PROTECT deadlines in the options."""

    def test_manual_example(self) -> None:
        options = after_sales_options(make_order(), {}, CLOSE - SECOND)
        option = pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON)
        assert option.eligible and option.rule == "R-7D-WINDOW"
        assert option.deadline is not None
        assert option.deadline.isoformat() == "2026-11-11T00:00:00+08:00"
        assert pick(options, Remedy.EXCHANGE, Reason.SIZE).deadline == CLOSE
        assert pick(options, Remedy.RETURN_REFUND, Reason.WORKMANSHIP).deadline is None
        assert pick(options, Remedy.PRICE_PROTECTION, Reason.PRICE_DROP).eligible is False  # closed 11-09

    def test_deadline_is_kept_when_the_window_has_closed(self) -> None:
        options = after_sales_options(make_order(), {}, CLOSE)
        for remedy in (Remedy.RETURN_REFUND, Remedy.EXCHANGE):
            option = pick(options, remedy, Reason.NO_REASON)
            assert not option.eligible and option.rule == "R-BEYOND-7D" and option.deadline == CLOSE
        quality_exchange = pick(options, Remedy.EXCHANGE, Reason.WORKMANSHIP)
        assert not quality_exchange.eligible and quality_exchange.rule == "R-EXCHANGE-7D"
        assert quality_exchange.deadline == CLOSE
        assert pick(options, Remedy.RETURN_REFUND, Reason.WORKMANSHIP).eligible
        price = pick(options, Remedy.PRICE_PROTECTION, Reason.PRICE_DROP)
        assert price.deadline == at("2026-11-09T00:00:00+08:00") and not price.eligible

    def test_price_protection_before_receipt_shows_its_deadline(self) -> None:
        options = after_sales_options(make_order(signed_at=None), {}, at("2026-11-02T12:00:00+08:00"))
        price = pick(options, Remedy.PRICE_PROTECTION, Reason.PRICE_DROP)
        assert not price.eligible and price.deadline == at("2026-11-09T00:00:00+08:00")


class TestOptionsByStage:
    def test_unshipped(self) -> None:
        options = after_sales_options(make_order(signed_at=None, shipped=False), {}, PAID)
        refund = pick(options, Remedy.REFUND_ONLY, None)
        assert refund.eligible and refund.rule == "R-RO-UNSHIPPED"
        assert not pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON).eligible

    def test_shipped(self) -> None:
        options = after_sales_options(make_order(signed_at=None), {}, PAID)
        assert pick(options, Remedy.REFUND_ONLY, None).rule == "R-RO-SHIPPED"
        assert pick(options, Remedy.RESHIP, Reason.LOST).eligible
        assert not pick(options, Remedy.RESHIP, Reason.DAMAGED).eligible
        assert not pick(options, Remedy.EXCHANGE, Reason.SIZE).eligible

    def test_received(self) -> None:
        options = after_sales_options(make_order(), {}, at("2026-11-05T12:00:00+08:00"))
        refund = pick(options, Remedy.REFUND_ONLY, None)
        assert refund.eligible and refund.rule == "R-RO-RECEIVED"
        assert "退运费" in refund.message_zh
        assert pick(options, Remedy.RESHIP, Reason.DAMAGED).eligible
        assert not pick(options, Remedy.RESHIP, Reason.LOST).eligible


class TestOptionsPerLine:
    def test_excluded_category(self) -> None:  # R-7D-EXCLUDED
        options = after_sales_options(make_order(no_reason_return=False), {}, at("2026-11-05T12:00:00+08:00"))
        assert pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON).rule == "R-7D-EXCLUDED"
        assert pick(options, Remedy.RETURN_REFUND, Reason.SIZE).eligible
        assert pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON, "L2").eligible

    def test_exchanged_line(self) -> None:  # R-EXCHANGE-ONCE
        replacement_signed = at("2026-11-08T10:00:00+08:00")
        exchanged = {"L1": LineHistory("L1", exchanged=True, replacement_signed_at=replacement_signed)}
        options = after_sales_options(make_order(), exchanged, at("2026-11-12T12:00:00+08:00"))
        exchange = pick(options, Remedy.EXCHANGE, Reason.SIZE)
        assert not exchange.eligible and exchange.rule == "R-EXCHANGE-ONCE"
        back = pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON)
        assert back.eligible and back.deadline == at("2026-11-16T00:00:00+08:00")
        assert not pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON, "L2").eligible  # R-BEYOND-7D

    def test_exhausted_allowance(self) -> None:  # R-COMP-CAP
        spent = {"L1": LineHistory("L1", compensated=Decimal("180.00"))}
        options = after_sales_options(make_order(), spent, at("2026-11-05T12:00:00+08:00"))
        assert pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON).rule == "R-COMP-CAP"
        assert pick(options, Remedy.CASHBACK, Reason.SHIPPING_FEE).eligible  # outside the cap
        assert pick(options, Remedy.EXCHANGE, Reason.SIZE).eligible
        assert pick(options, Remedy.RETURN_REFUND, Reason.NO_REASON, "L2").eligible
