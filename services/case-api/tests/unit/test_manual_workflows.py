"""The manual's workflows in the domain (issue 12): the exchange's replacement parcel (R-EXCHANGE-7D),
usage consultations (R-USAGE), inspections as data (R-INSPECT deciding R-RESALEABLE) and the five-photo
limit (R-EVIDENCE). Times are Asia/Shanghai, boundaries to the second."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from case_api.domain import commands as c
from case_api.domain.case import Case, CaseConflict, CaseDetails, handle, sign_replacement
from case_api.domain.model import (
    CaseLine,
    CaseRequest,
    InvalidRequest,
    LineHistory,
    Order,
    OrderLine,
    PolicyRefusal,
    Reason,
    Remedy,
    Stage,
)
from case_api.domain.policy import EXPLANATIONS, evaluate
from case_api.domain.workflow import CaseStatus

SECOND = timedelta(seconds=1)
SIGNED = datetime.fromisoformat("2026-11-03T15:20:00+08:00")
CLOSE = datetime.fromisoformat("2026-11-11T00:00:00+08:00")  # R-7D-WINDOW for SIGNED
DURING = datetime.fromisoformat("2026-11-05T12:00:00+08:00")
S = CaseStatus


def order(signed_at: datetime | None = SIGNED, no_reason_return: bool = True) -> Order:
    line = OrderLine("L1", "SKU-1", 1, Decimal("100.00"), Decimal("100.00"), no_reason_return)
    return Order(
        order_id="O1",
        shop_id="S1",
        buyer_id="B1",
        paid_at=datetime.fromisoformat("2026-11-01T10:00:00+08:00"),
        lines=(line,),
        shipped_at=datetime.fromisoformat("2026-11-02T09:00:00+08:00"),
        signed_at=signed_at,
    )


def ask(remedy: Remedy, reason: Reason, **extra: Any) -> CaseRequest:
    return CaseRequest(remedy=remedy, reason=reason, lines=(CaseLine("L1", 1),), **extra)


def refused(an_order: Order, request: CaseRequest, now: datetime) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        evaluate(an_order, request, {}, now)
    assert caught.value.message_zh and caught.value.message_en
    return caught.value


def case(remedy: Remedy, reason: Reason, status: CaseStatus, **details: Any) -> Case:
    return Case(
        id="case_1",
        remedy=remedy,
        reason=reason,
        status=status,
        stage=Stage.RECEIVED,
        amount=None,
        lines=(CaseLine("L1", 1),),
        details=CaseDetails(**details),
    )


class TestConsultation:
    """R-USAGE: a usage question is answered with the standard explanation; a remedy only where allowed."""

    @pytest.mark.parametrize(
        "reason", [Reason.FADING, Reason.ODOR, Reason.SNAG, Reason.PILLING, Reason.OTHER]
    )
    def test_answered_in_zh_and_en_without_money_evidence_or_retention(self, reason: Reason) -> None:
        decision = evaluate(order(), ask(Remedy.CONSULTATION, reason), {}, DURING)
        assert decision.consultation is not None
        assert (decision.consultation.explanation_zh, decision.consultation.explanation_en) == EXPLANATIONS[
            reason
        ]
        assert (decision.amount, decision.evidence_missing, decision.needs_retention) == (None, 0, False)
        assert decision.line_amounts == {"L1": Decimal("0.00")}
        assert decision.rules == ("R-USAGE",)

    def test_offers_the_no_reason_return_and_exchange_until_the_last_second_of_the_window(self) -> None:
        decision = evaluate(order(), ask(Remedy.CONSULTATION, Reason.PILLING), {}, CLOSE - SECOND)
        assert decision.consultation is not None
        offered = {(o.remedy, o.reason, o.deadline) for o in decision.consultation.offered}
        assert offered == {
            (Remedy.RETURN_REFUND, Reason.NO_REASON, CLOSE),
            (Remedy.EXCHANGE, Reason.NO_REASON, CLOSE),
        }

    def test_offers_nothing_once_the_window_closed(self) -> None:
        decision = evaluate(order(), ask(Remedy.CONSULTATION, Reason.FADING), {}, CLOSE)
        assert decision.consultation is not None and decision.consultation.offered == ()

    def test_offers_nothing_for_a_line_excluded_from_no_reason_returns(self) -> None:
        decision = evaluate(order(no_reason_return=False), ask(Remedy.CONSULTATION, Reason.ODOR), {}, DURING)
        assert decision.consultation is not None and decision.consultation.offered == ()

    def test_offers_no_second_exchange(self) -> None:
        exchanged = {"L1": LineHistory("L1", exchanged=True, replacement_signed_at=SIGNED)}
        decision = evaluate(order(), ask(Remedy.CONSULTATION, Reason.SNAG), exchanged, DURING)
        assert decision.consultation is not None
        assert {o.remedy for o in decision.consultation.offered} == {Remedy.RETURN_REFUND}

    def test_before_sign_off_is_refused(self) -> None:
        refusal = refused(order(signed_at=None), ask(Remedy.CONSULTATION, Reason.FADING), DURING)
        assert refusal.rule == "R-USAGE"

    @pytest.mark.parametrize("reason", [Reason.SIZE, Reason.DAMAGED, Reason.NO_REASON, Reason.USAGE])
    def test_only_usage_reasons(self, reason: Reason) -> None:
        assert refused(order(), ask(Remedy.CONSULTATION, reason), DURING).rule == "R-REMEDY-REASON"

    @pytest.mark.parametrize(
        "remedy", [Remedy.REFUND_ONLY, Remedy.RETURN_REFUND, Remedy.EXCHANGE, Remedy.RESHIP, Remedy.CASHBACK]
    )
    def test_a_usage_question_takes_no_other_remedy(self, remedy: Remedy) -> None:
        request = ask(remedy, Reason.FADING, amount=Decimal("10.00") if remedy is Remedy.CASHBACK else None)
        assert refused(order(), request, DURING).rule == "R-REMEDY-REASON"

    def test_takes_no_amount(self) -> None:
        with pytest.raises(InvalidRequest):
            evaluate(order(), ask(Remedy.CONSULTATION, Reason.FADING, amount=Decimal("5.00")), {}, DURING)

    def test_is_closed_from_open_and_never_approved(self) -> None:
        consultation = case(Remedy.CONSULTATION, Reason.FADING, S.open)
        assert handle(consultation, c.Close(), DURING).case.status is S.closed
        with pytest.raises(CaseConflict):
            handle(consultation, c.Approve(), DURING)

    def test_another_open_case_cannot_be_closed(self) -> None:
        with pytest.raises(CaseConflict) as caught:
            handle(case(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, S.open), c.Close(), DURING)
        assert caught.value.code == "invalid_transition"


class TestFivePhotos:
    """R-EVIDENCE: at most five photos; six are refused, not trimmed."""

    def test_five_photos_are_accepted(self) -> None:
        decision = evaluate(order(), ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, images=5), {}, DURING)
        assert decision.evidence_missing == 0

    @pytest.mark.parametrize("reason", [Reason.WORKMANSHIP, Reason.DAMAGED, Reason.SIZE, Reason.NO_REASON])
    def test_six_photos_are_refused(self, reason: Reason) -> None:
        remedy = Remedy.RESHIP if reason is Reason.DAMAGED else Remedy.RETURN_REFUND
        refusal = refused(order(), ask(remedy, reason, images=6), DURING)
        assert refusal.rule == "R-EVIDENCE"
        assert (refusal.facts["photos"], refusal.facts["maximum_photos"]) == ("6", "5")

    def test_videos_are_not_counted_as_photos(self) -> None:
        decision = evaluate(
            order(), ask(Remedy.RETURN_REFUND, Reason.WORKMANSHIP, images=5, videos=3), {}, DURING
        )
        assert decision.evidence_missing == 0


SHIPPED_AT = datetime.fromisoformat("2026-11-08T10:00:00+08:00")


class TestShipReplacement:
    """R-EXCHANGE-7D: the replacement's own parcel, recorded once after approval."""

    def ship(self, **fields: Any) -> c.ShipReplacement:
        return c.ShipReplacement(**{"carrier": "SF", "tracking_no": "SF2", "shipped_at": SHIPPED_AT} | fields)

    @pytest.mark.parametrize("status", [S.awaiting_return, S.return_received, S.exchanged])
    def test_recorded_without_moving_the_case(self, status: CaseStatus) -> None:
        change = handle(case(Remedy.EXCHANGE, Reason.SIZE, status), self.ship(), SHIPPED_AT)
        assert change.case.status is status
        parcel = change.case.details.replacement_parcel
        assert parcel is not None and (parcel.tracking_no, parcel.shipped_at) == ("SF2", SHIPPED_AT)

    @pytest.mark.parametrize("status", [S.open, S.retention, S.awaiting_evidence, S.closed, S.rejected])
    def test_not_before_approval_nor_after_the_end(self, status: CaseStatus) -> None:
        with pytest.raises(CaseConflict) as caught:
            handle(case(Remedy.EXCHANGE, Reason.SIZE, status), self.ship(), SHIPPED_AT)
        assert caught.value.code == "invalid_transition"

    def test_only_an_exchange_has_a_replacement(self) -> None:
        with pytest.raises(CaseConflict) as caught:
            handle(case(Remedy.RETURN_REFUND, Reason.SIZE, S.awaiting_return), self.ship(), SHIPPED_AT)
        assert caught.value.code == "not_an_exchange"

    def test_only_once(self) -> None:
        shipped = handle(case(Remedy.EXCHANGE, Reason.SIZE, S.exchanged), self.ship(), SHIPPED_AT).case
        with pytest.raises(CaseConflict) as caught:
            handle(shipped, self.ship(tracking_no="SF3"), SHIPPED_AT)
        assert caught.value.code == "replacement_already_shipped"

    def test_not_dated_in_the_future(self) -> None:
        exchange = case(Remedy.EXCHANGE, Reason.SIZE, S.exchanged)
        assert handle(exchange, self.ship(), SHIPPED_AT).case.details.replacement_parcel is not None
        with pytest.raises(InvalidRequest) as caught:
            handle(exchange, self.ship(), SHIPPED_AT - SECOND)
        assert caught.value.field == "shipped_at"

    def test_its_delivery_is_the_replacements_sign_off_once(self) -> None:
        shipped = handle(case(Remedy.EXCHANGE, Reason.SIZE, S.exchanged), self.ship(), SHIPPED_AT).case
        assert sign_replacement(shipped, "SF9", SHIPPED_AT + SECOND) is None  # another parcel
        with pytest.raises(InvalidRequest):
            sign_replacement(shipped, "SF2", SHIPPED_AT - SECOND)  # before it shipped
        change = sign_replacement(shipped, "SF2", SHIPPED_AT)
        assert change is not None and change.case.details.replacement_signed_at == SHIPPED_AT
        assert change.case.status is S.exchanged
        assert sign_replacement(change.case, "SF2", SHIPPED_AT + timedelta(days=1)) is None  # never moves


class TestInspection:
    """R-INSPECT as data; under R-RESALEABLE the checks decide the result."""

    RESALE = ("R-7D-WINDOW", "R-RR-RECEIVED", "R-RESALEABLE")

    def inspect(self, the_case: Case, **fields: Any) -> Case:
        return handle(the_case, c.RecordInspection(**fields), DURING).case

    def received(self, remedy: Remedy = Remedy.RETURN_REFUND, reason: Reason = Reason.NO_REASON) -> Case:
        rules = self.RESALE if reason in (Reason.NO_REASON, Reason.SIZE) else ("R-RR-RECEIVED",)
        return case(remedy, reason, S.return_received, rules=rules)

    def test_tags_on_unworn_unwashed_passes(self) -> None:
        done = self.inspect(self.received(), tags_on=True, worn=False, washed=False)
        assert done.status is S.return_received
        assert done.details.inspection is not None and done.details.inspection.passed is True

    def test_a_passed_exchange_is_exchanged(self) -> None:
        done = self.inspect(
            self.received(Remedy.EXCHANGE, Reason.SIZE), tags_on=True, worn=False, washed=False
        )
        assert done.status is S.exchanged

    @pytest.mark.parametrize(
        "checks",
        [
            {"tags_on": False, "worn": False, "washed": False},
            {"tags_on": True, "worn": True, "washed": False},
            {"tags_on": True, "worn": False, "washed": True},
            {"worn": True},  # one failing check is enough
        ],
    )
    def test_any_failed_check_fails_and_returns_the_case_to_support(self, checks: dict[str, bool]) -> None:
        done = self.inspect(self.received(Remedy.EXCHANGE, Reason.NO_REASON), **checks)
        assert done.status is S.open
        assert done.details.inspection is not None and done.details.inspection.passed is False

    def test_a_passed_that_contradicts_the_checks_is_refused(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            self.inspect(self.received(), passed=True, tags_on=True, worn=True, washed=False)
        assert caught.value.field == "passed"

    def test_incomplete_resale_checks_are_refused(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            self.inspect(self.received(), tags_on=True, worn=False)
        assert caught.value.field == "washed"

    def test_a_return_needs_a_result(self) -> None:
        with pytest.raises(InvalidRequest):
            self.inspect(self.received(), notes="looked at it")

    def test_outside_r_resaleable_passed_decides_and_the_checks_are_kept(self) -> None:
        done = self.inspect(self.received(reason=Reason.WORKMANSHIP), passed=True, worn=True, washed=True)
        inspection = done.details.inspection
        assert inspection is not None and (inspection.passed, inspection.worn) == (True, True)

    @pytest.mark.parametrize(
        ("marks", "agree"),
        [
            ({"hang_tag": "M", "wash_label": "m ", "neck_label": "M"}, True),
            ({"hang_tag": "M", "wash_label": "M", "neck_label": "L"}, False),
            ({"hang_tag": "M", "neck_label": "L"}, False),
            ({"hang_tag": "M"}, None),
        ],
    )
    def test_size_marks_agree_or_not(self, marks: dict[str, str], agree: bool | None) -> None:
        done = self.inspect(case(Remedy.EXCHANGE, Reason.SIZE, S.open), size_marks=marks)
        assert done.status is S.open
        assert done.details.inspection is not None and done.details.inspection.sizes_agree is agree

    def test_a_check_on_an_open_case_weighs_the_parcel_and_moves_nothing(self) -> None:
        missing = case(Remedy.RESHIP, Reason.MISSING_ITEM, S.open)
        change = handle(missing, c.RecordInspection(parcel_weight_g=420, expected_weight_g=650), DURING)
        inspection = change.case.details.inspection
        assert change.case.status is S.open
        assert inspection is not None and (inspection.passed, inspection.weight_difference_g) == (None, -230)

    def test_a_check_on_an_open_case_neither_passes_nor_fails(self) -> None:
        with pytest.raises(CaseConflict) as caught:
            self.inspect(case(Remedy.RESHIP, Reason.MISSING_ITEM, S.open), passed=False)
        assert caught.value.code == "not_a_return_inspection"
