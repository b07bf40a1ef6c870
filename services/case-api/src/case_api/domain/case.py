"""The case aggregate: a case's state, its typed details, and what each command does to it.

Pure: `handle(case, command, now)` checks the move (the workflow's table), applies the rules that guard it
(R-LOST, R-RO-SHIPPED, R-RESALEABLE, R-REFUND-VERIFY) and returns the case's next state, the data its
timeline entry and event carry, and the effects the service carries out in the same transaction: money to
grant or release (the ledger), a cashback to pay, a reship to create, a register entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from . import commands as c
from .model import CaseLine, Consultation, InvalidRequest, PolicyRefusal, Reason, Remedy, Rule, Stage
from .workflow import MOVES, Action, CaseStatus, after_intake

S = CaseStatus
# The grant is withdrawn: its reservation is released and its pending cashback cancelled (R-COMP-CAP).
WITHDRAWN = frozenset({S.rejected, S.withdrawn, S.retained})
SETTLED_BY_CASHBACK = frozenset({Remedy.PRICE_PROTECTION, Remedy.CASHBACK})
RETURN_NOTICE = {  # R-RETURN-NOTICE
    "condition_zh": "请保持商品吊牌完好、未穿着、未洗涤,不影响二次销售。",
    "condition_en": "Please keep the tags on; the item must be unworn, unwashed and resaleable.",
    "ship_back_within_days": 7,
    "processing_days": "3-5",
    "service_wechat": "official customer-service WeChat: see the shop page",
}


class CaseConflict(Exception):
    """The case is not in a state for this command (a 409 with a stable code)."""

    def __init__(self, code: str, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.facts = facts


# ---------------------------------------------------------------- state


class ReturnParcel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    carrier: str
    tracking_no: str
    submitted_at: datetime


class SizeMarks(BaseModel):
    """R-SIZE: the size printed on each label of the garment."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hang_tag: str | None = None  # 吊牌
    wash_label: str | None = None  # 洗水唛
    neck_label: str | None = None  # 领标

    def agree(self) -> bool | None:
        """Do the marks recorded name one size? None when fewer than two were recorded."""
        marks = {m.strip().upper() for m in (self.hang_tag, self.wash_label, self.neck_label) if m}
        recorded = sum(1 for m in (self.hang_tag, self.wash_label, self.neck_label) if m)
        return None if recorded < 2 else len(marks) == 1


class Inspection(BaseModel):
    """R-INSPECT: one inspection as data. `passed` is None for a check made while the case is open."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    passed: bool | None = None
    notes: str | None = None
    at: datetime
    tags_on: bool | None = None
    worn: bool | None = None
    washed: bool | None = None
    size_marks: SizeMarks | None = None
    sizes_agree: bool | None = None
    parcel_weight_g: int | None = None
    expected_weight_g: int | None = None
    weight_difference_g: int | None = None  # weighed − expected: below zero, something may be missing


class ReplacementParcel(BaseModel):
    """R-EXCHANGE-7D: the exchange's replacement, a parcel of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    carrier: str
    tracking_no: str
    shipped_at: datetime


class OfferedRemedy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    line_id: str
    remedy: str
    reason: str | None
    deadline: datetime | None
    message_zh: str
    message_en: str


class ConsultationAnswer(BaseModel):
    """R-USAGE: the standard explanation given, and the remedies the policy allowed when it was asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    explanation_zh: str
    explanation_en: str
    offered_remedies: tuple[OfferedRemedy, ...]  # required, so that none offered is stored as []

    @classmethod
    def of(cls, answer: Consultation) -> ConsultationAnswer:
        return cls(
            explanation_zh=answer.explanation_zh,
            explanation_en=answer.explanation_en,
            offered_remedies=tuple(
                OfferedRemedy(
                    line_id=o.line_id,
                    remedy=o.remedy,
                    reason=o.reason,
                    deadline=o.deadline,
                    message_zh=o.message_zh,
                    message_en=o.message_en,
                )
                for o in answer.offered
            ),
        )


class CaseDetails(BaseModel):
    """The facts a case gathers on its way, each named once (stored as JSON with the case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[str, ...] = ()  # the rules its intake was decided by
    deadline: datetime | None = None  # the window the request was checked against
    new_order_id: str | None = None  # R-PRICE-PROTECT: the cheaper order
    shipping_amounts: dict[str, Decimal] = {}  # R-POSTAGE: postage money per line
    return_parcel: ReturnParcel | None = None
    received_at: datetime | None = None
    inspection: Inspection | None = None
    refunded_amount: Decimal | None = None
    refunded_at: datetime | None = None
    intercepted_at: datetime | None = None  # R-RO-SHIPPED: the parcel is on its way back
    status_before_carrier: CaseStatus | None = None
    carrier_confirmed: bool | None = None  # R-LOST
    reship_order_id: str | None = None
    replacement_parcel: ReplacementParcel | None = None  # R-EXCHANGE-7D
    replacement_signed_at: datetime | None = None  # R-EXCHANGE-7D: the replacement's own sign-off
    consultation: ConsultationAnswer | None = None  # R-USAGE

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    remedy: Remedy
    reason: Reason
    status: CaseStatus
    stage: Stage
    amount: Decimal | None
    lines: tuple[CaseLine, ...]
    details: CaseDetails = field(default_factory=CaseDetails)
    needs_retention: bool = False
    evidence_missing: int = 0


# ---------------------------------------------------------------- effects: what the service carries out


@dataclass(frozen=True, slots=True)
class WithdrawMoney:
    """Release the case's reservation; cancel its cashback not yet paid, ask a clawback of what was."""


@dataclass(frozen=True, slots=True)
class ReleaseUnspent:
    """A closed case: what it reserved and never granted is free again."""


@dataclass(frozen=True, slots=True)
class GrantMoney:
    total: Decimal | None = None  # the whole reservation when None; less is shared pro rata


@dataclass(frozen=True, slots=True)
class PayAsCashback:
    """A price-protection or cashback case is paid by a cashback task that takes over its reservation."""


@dataclass(frozen=True, slots=True)
class KeepRetention:
    offer: str
    outcome: str
    real_reason: str | None


@dataclass(frozen=True, slots=True)
class FollowUpCarrier:
    """The logistics follow-up register: reported with an SLA, or the carrier's verdict."""

    sla_due_at: datetime | None = None
    verdict: str | None = None
    confirmed: bool | None = None


@dataclass(frozen=True, slots=True)
class ShipReship:
    reship_order_id: str
    lines: tuple[CaseLine, ...]
    notes: str | None


@dataclass(frozen=True, slots=True)
class KeepInspection:
    """The inspections register (R-INSPECT)."""

    inspection: Inspection


Effect = (
    WithdrawMoney
    | ReleaseUnspent
    | GrantMoney
    | PayAsCashback
    | KeepRetention
    | FollowUpCarrier
    | ShipReship
    | KeepInspection
)


@dataclass(frozen=True, slots=True)
class Change:
    case: Case
    data: dict[str, Any]  # what the timeline entry and the event carry
    effects: tuple[Effect, ...] = ()


# ---------------------------------------------------------------- handle


def check_move(case: Case, action: Action) -> None:
    """The workflow's table: may `action` move a case in this status?"""
    move = MOVES[action]
    if case.status not in move.sources:
        raise CaseConflict(
            "invalid_transition",
            f"cannot {action} a case that is {case.status}: {move.hint}",
            case_status=case.status,
            allowed_from=sorted(move.sources),
        )


def handle(case: Case, command: c.Command, now: datetime) -> Change:
    """The case's next state, the data of its timeline entry, and the effects to carry out."""
    check_move(case, c.ACTIONS[type(command)])
    change = STEPS[type(command)](case, command, now)
    if change.case.status in WITHDRAWN:
        change = replace(change, effects=(*change.effects, WithdrawMoney()))
    elif change.case.status is S.closed:
        change = replace(change, effects=(*change.effects, ReleaseUnspent()))
    return change


def _moved(case: Case, data: dict[str, Any], *effects: Effect, **changes: Any) -> Change:
    details = {k[len("details_") :]: v for k, v in changes.items() if k.startswith("details_")}
    state = {k: v for k, v in changes.items() if not k.startswith("details_")}
    if details:
        state["details"] = case.details.model_copy(update=details)
    return Change(replace(case, **state), data, effects)


def _notes(notes: str | None, key: str = "notes") -> dict[str, Any]:
    return {key: notes} if notes else {}


def _record_retention(case: Case, command: c.RecordRetention, now: datetime) -> Change:
    retained = command.outcome == "accepted"  # R-RETENTION
    return _moved(
        case,
        {"offer": command.offer, "outcome": command.outcome, "real_reason": command.real_reason},
        KeepRetention(command.offer, command.outcome, command.real_reason),
        status=S.retained if retained else S.open,
    )


def _approve(case: Case, command: c.Approve, now: datetime) -> Change:
    if case.remedy is Remedy.CONSULTATION:  # R-USAGE: answered at intake; support closes it
        raise CaseConflict("nothing_to_approve", "a consultation is answered, not approved: close it")
    require_carrier_confirmed(case)
    if case.remedy in (Remedy.RETURN_REFUND, Remedy.EXCHANGE) and case.stage is Stage.RECEIVED:
        data: dict[str, Any] = {"return_notice": RETURN_NOTICE}  # R-RETURN-NOTICE
        if case.remedy is Remedy.EXCHANGE:
            data["replacement"] = "may ship now"  # R-EXCHANGE-7D
        return _moved(case, data, status=S.awaiting_return)
    if case.remedy in SETTLED_BY_CASHBACK:
        return _moved(case, {}, PayAsCashback(), status=S.approved)
    unshipped_refund = (
        case.remedy in (Remedy.REFUND_ONLY, Remedy.RETURN_REFUND) and case.stage is Stage.UNSHIPPED
    )
    # R-RO-UNSHIPPED: the warehouse cancels the shipment
    return _moved(case, {"cancel_shipment": True} if unshipped_refund else {}, status=S.approved)


def require_carrier_confirmed(case: Case) -> None:
    """R-LOST: no reship (nor any settlement) of a lost parcel before the carrier confirms the loss."""
    if case.reason is Reason.LOST and not case.details.carrier_confirmed:
        raise PolicyRefusal(
            Rule.LOST,
            "您好，我们已请快递公司核实包裹丢失情况，快递公司确认丢件后会第一时间为您补发，请耐心等待。",
            "We have asked the carrier to confirm the parcel is lost; we will reship as soon as they "
            "confirm it. Thank you for your patience.",
            {"case_id": case.id, "carrier_confirmed": "false"},
        )


def _reject(case: Case, command: c.Reject, now: datetime) -> Change:
    return _moved(case, {"reason_code": command.reason_code, "message": command.message}, status=S.rejected)


def _withdraw(case: Case, command: c.Withdraw, now: datetime) -> Change:
    return _moved(case, _notes(command.message, "message"), status=S.withdrawn)


def _attach_evidence(case: Case, command: c.AttachEvidence, now: datetime) -> Change:
    status = case.status
    if status is S.awaiting_evidence:
        status = after_intake(command.evidence_missing, case.needs_retention)  # R-EVIDENCE
    data = {"attached": list(command.attached), "evidence_missing": command.evidence_missing}
    return _moved(case, data, status=status, evidence_missing=command.evidence_missing)


def _submit_return_tracking(case: Case, command: c.SubmitReturnTracking, now: datetime) -> Change:
    parcel = ReturnParcel(carrier=command.carrier, tracking_no=command.tracking_no, submitted_at=now)
    return _moved(case, parcel.model_dump(mode="json"), details_return_parcel=parcel)


def _record_receipt(case: Case, command: c.RecordReceipt, now: datetime) -> Change:
    return _moved(case, _notes(command.notes), status=S.return_received, details_received_at=now)


def _record_inspection(case: Case, command: c.RecordInspection, now: datetime) -> Change:
    """R-INSPECT: the checks as data. On a received return the result decides the refund or exchange (under
    R-RESALEABLE the resale checks decide it); on an open case it is a check that moves nothing."""
    marks = SizeMarks.model_validate(command.size_marks) if command.size_marks else None
    weighed, expected = command.parcel_weight_g, command.expected_weight_g
    passed = _inspection_result(case, command) if case.status is S.return_received else None
    if case.status is not S.return_received and command.passed is not None:
        raise CaseConflict(  # a verdict belongs to the inspection of a received return
            "not_a_return_inspection",
            f"a {case.status} case takes checks, not a verdict: only a received return passes or fails",
            case_status=case.status,
        )
    inspection = Inspection(
        passed=passed,
        notes=command.notes,
        at=now,
        tags_on=command.tags_on,
        worn=command.worn,
        washed=command.washed,
        size_marks=marks,
        sizes_agree=marks.agree() if marks else None,
        parcel_weight_g=weighed,
        expected_weight_g=expected,
        weight_difference_g=weighed - expected if weighed is not None and expected is not None else None,
    )
    status = case.status
    if passed is False:
        status = S.open  # R-RESALEABLE: the refund stops; support decides with the notes
    elif passed and case.remedy is Remedy.EXCHANGE:
        status = S.exchanged
    data = inspection.model_dump(mode="json", exclude_none=True)
    return _moved(case, data, KeepInspection(inspection), status=status, details_inspection=inspection)


def _inspection_result(case: Case, command: c.RecordInspection) -> bool:
    """R-RESALEABLE: tags on, not worn, not washed. Where the case's intake named R-RESALEABLE and the
    checks were made, they decide; a `passed` that says otherwise is refused. Elsewhere `passed` decides."""
    checks = (command.tags_on, command.worn, command.washed)
    if Rule.RESALEABLE not in case.details.rules or all(check is None for check in checks):
        if command.passed is None:
            raise InvalidRequest(
                "passed", "the inspection of a return needs passed (or tags_on, worn, washed)"
            )
        return command.passed
    if command.tags_on is False or command.worn or command.washed:
        resaleable = False
    elif None in checks:
        missing = [n for n, v in zip(("tags_on", "worn", "washed"), checks, strict=True) if v is None]
        raise InvalidRequest(missing[0], f"the resale checks need {', '.join(missing)} as well")
    else:
        resaleable = True
    if command.passed is not None and command.passed != resaleable:
        raise InvalidRequest(
            "passed", f"contradicts the checks: tags on, unworn and unwashed is {str(resaleable).lower()}"
        )
    return resaleable


def _refund(case: Case, command: c.Refund, now: datetime) -> Change:
    if case.amount is None:
        raise CaseConflict("nothing_to_refund", f"a {case.remedy} case has no refund amount")
    if case.remedy not in (Remedy.REFUND_ONLY, Remedy.RETURN_REFUND):
        raise CaseConflict("not_a_refund", f"a {case.remedy} case is not settled by a refund")
    inspection = case.details.inspection
    if case.status is S.return_received and not (inspection and inspection.passed):
        raise PolicyRefusal(  # R-RESALEABLE: the refund waits for the warehouse's inspection
            Rule.RESALEABLE,
            "您好，退回的商品正在等待仓库验收，验收通过后会第一时间为您退款，请耐心等待。",
            "Your return is waiting for the warehouse's inspection; we will refund as soon as it passes. "
            "Thank you for your patience.",
            {"case_id": case.id, "inspection": "pending"},
        )
    if case.status is S.approved and case.stage is Stage.SHIPPED and case.details.intercepted_at is None:
        raise PolicyRefusal(  # R-RO-SHIPPED: refund when the intercept succeeds, not before
            Rule.RO_SHIPPED,
            "您好，包裹正在拦截中，请您拒收包裹；快递确认拦截成功、包裹退回后我们会立即为您退款。",
            "Your parcel is being intercepted; please refuse it at the door. We will refund as soon as the "
            "carrier confirms the intercept and the parcel is on its way back.",
            {"case_id": case.id, "intercept": "not confirmed"},
        )
    amount = command.amount if command.amount is not None else case.amount
    if amount <= 0 or amount > case.amount:  # R-REFUND-VERIFY, R-COMP-CAP: at most what the case reserved
        raise PolicyRefusal(
            Rule.COMP_CAP,
            f"退款金额需在 0.01 至 {case.amount:.2f} 元之间，请调整后再提交。",
            f"The refund must be between 0.01 and {case.amount:.2f} CNY. Please adjust it and try again.",
            {"remaining_allowance": f"{case.amount:.2f}", "requested": f"{amount:.2f}"},
        )
    return _moved(
        case,
        {"amount": f"{amount:.2f}"},
        GrantMoney(amount),
        status=S.refunded,
        details_refunded_amount=amount,
        details_refunded_at=now,
    )


def _request_intercept(case: Case, command: c.RequestIntercept, now: datetime) -> Change:
    if case.stage is not Stage.SHIPPED:
        raise CaseConflict("nothing_to_intercept", "only a shipped, unreceived parcel can be intercepted")
    # R-RO-SHIPPED: the customer is told to refuse the parcel
    return _moved(case, _notes(command.notes, "note"), status=S.intercepting)


def _confirm_intercept(case: Case, command: c.ConfirmIntercept, now: datetime) -> Change:
    return _moved(case, _notes(command.notes), status=S.approved, details_intercepted_at=now)


def _report_to_carrier(case: Case, command: c.ReportToCarrier, now: datetime) -> Change:
    return _moved(
        case,
        {"sla_due_at": command.sla_due_at.isoformat(), "notes": command.notes},
        FollowUpCarrier(sla_due_at=command.sla_due_at),  # R-LOST: the carrier answers within the SLA
        status=S.awaiting_carrier,
        details_status_before_carrier=case.status,
    )


def _record_carrier_verdict(case: Case, command: c.RecordCarrierVerdict, now: datetime) -> Change:
    verdict = command.verdict or ("confirmed" if command.confirmed else "not confirmed")
    back = S.approved if case.details.status_before_carrier is S.approved else S.open
    return _moved(
        case,
        {"confirmed": command.confirmed, "verdict": verdict},
        FollowUpCarrier(verdict=verdict, confirmed=command.confirmed),
        status=back,
        details_carrier_confirmed=command.confirmed,
    )


def _create_reship(case: Case, command: c.CreateReship, now: datetime) -> Change:
    if case.remedy is not Remedy.RESHIP:
        raise CaseConflict("not_a_reship", f"a {case.remedy} case is not settled by a reship")
    require_carrier_confirmed(case)
    lines = command.lines or case.lines
    case_quantity = {line.line_id: line.quantity for line in case.lines}
    if any(line.quantity > case_quantity.get(line.line_id, 0) for line in lines):
        raise InvalidRequest("reship_lines", "reship lines must be lines of the case, at most their quantity")
    return _moved(
        case,
        {},
        ShipReship(command.reship_order_id, lines, command.notes),
        GrantMoney(),  # R-RESHIP: its value was reserved at intake (R-COMP-CAP)
        status=S.reshipped,
        details_reship_order_id=command.reship_order_id,
    )


def _ship_replacement(case: Case, command: c.ShipReplacement, now: datetime) -> Change:
    """R-EXCHANGE-7D: record the replacement's own parcel, once; the watcher follows it to its sign-off."""
    if case.remedy is not Remedy.EXCHANGE:
        raise CaseConflict("not_an_exchange", f"a {case.remedy} case has no replacement")
    shipped = case.details.replacement_parcel
    if shipped is not None:
        raise CaseConflict(
            "replacement_already_shipped",
            f"the replacement already shipped as {shipped.carrier} {shipped.tracking_no}",
            tracking_no=shipped.tracking_no,
        )
    if command.shipped_at > now:
        raise InvalidRequest("shipped_at", "cannot be in the future")
    parcel = ReplacementParcel(
        carrier=command.carrier, tracking_no=command.tracking_no, shipped_at=command.shipped_at
    )
    return _moved(case, parcel.model_dump(mode="json"), details_replacement_parcel=parcel)


def sign_replacement(case: Case, tracking_no: str, signed_at: datetime) -> Change | None:
    """R-EXCHANGE-7D / R-EXCHANGE-ONCE: the replacement's delivery is its sign-off, which opens its own
    7-day window. None when the parcel is not this case's replacement or its sign-off is already set; a
    sign-off dated before the replacement shipped is refused."""
    parcel = case.details.replacement_parcel
    if parcel is None or parcel.tracking_no != tracking_no or case.details.replacement_signed_at is not None:
        return None
    if signed_at < parcel.shipped_at:
        raise InvalidRequest("signed_at", "is before the replacement shipped")
    data = {"tracking_no": tracking_no, "replacement_signed_at": signed_at.isoformat()}
    return _moved(case, data, details_replacement_signed_at=signed_at)


def _close(case: Case, command: c.Close, now: datetime) -> Change:
    if case.status is S.open and case.remedy is not Remedy.CONSULTATION:
        raise CaseConflict(
            "invalid_transition",
            f"cannot close a {case.remedy} case that is open: approve, reject or withdraw it",
            case_status=case.status,
        )
    return _moved(case, _notes(command.notes), status=S.closed)


STEPS: dict[type[Any], Callable[[Case, Any, datetime], Change]] = {
    c.RecordRetention: _record_retention,
    c.Approve: _approve,
    c.Reject: _reject,
    c.Withdraw: _withdraw,
    c.AttachEvidence: _attach_evidence,
    c.SubmitReturnTracking: _submit_return_tracking,
    c.RecordReceipt: _record_receipt,
    c.RecordInspection: _record_inspection,
    c.Refund: _refund,
    c.RequestIntercept: _request_intercept,
    c.ConfirmIntercept: _confirm_intercept,
    c.ReportToCarrier: _report_to_carrier,
    c.RecordCarrierVerdict: _record_carrier_verdict,
    c.CreateReship: _create_reship,
    c.ShipReplacement: _ship_replacement,
    c.Close: _close,
}
