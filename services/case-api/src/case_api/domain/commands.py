"""The commands a case takes, one per workflow action, each with the facts it needs and nothing else.

Pure data. `from_request` builds a command from an action's request fields and refuses a missing one with
InvalidRequest (a 422 naming the field).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from .model import CaseLine, InvalidRequest
from .workflow import Action


@dataclass(frozen=True, slots=True)
class RecordRetention:
    offer: str
    outcome: str  # accepted (retained) or declined
    real_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Approve:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason_code: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Withdraw:
    message: str | None = None


@dataclass(frozen=True, slots=True)
class AttachEvidence:
    """Files already linked by the service, which counted what the case still misses (R-EVIDENCE)."""

    attached: tuple[dict[str, Any], ...]
    evidence_missing: int


@dataclass(frozen=True, slots=True)
class SubmitReturnTracking:
    carrier: str
    tracking_no: str


@dataclass(frozen=True, slots=True)
class RecordReceipt:
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class RecordInspection:
    """R-INSPECT: what the warehouse (or support) checked; `passed` where the checks do not decide it."""

    passed: bool | None = None
    notes: str | None = None
    tags_on: bool | None = None  # R-RESALEABLE
    worn: bool | None = None  # R-RESALEABLE, R-WORKMANSHIP
    washed: bool | None = None
    size_marks: dict[str, str | None] | None = None  # R-SIZE: hang_tag, wash_label, neck_label
    parcel_weight_g: int | None = None  # R-MISSING: weighed by the warehouse or the carrier
    expected_weight_g: int | None = None  # R-MISSING: what the order's goods should weigh


@dataclass(frozen=True, slots=True)
class Refund:
    amount: Decimal | None = None  # the case's amount when None


@dataclass(frozen=True, slots=True)
class RequestIntercept:
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class ConfirmIntercept:
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class ReportToCarrier:
    sla_due_at: datetime  # when the carrier's answer is due (R-LOST: 1–2 working days)
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class RecordCarrierVerdict:
    confirmed: bool
    verdict: str | None = None


@dataclass(frozen=True, slots=True)
class CreateReship:
    reship_order_id: str
    lines: tuple[CaseLine, ...] | None = None  # the case's lines when None
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class ShipReplacement:
    """R-EXCHANGE-7D: the replacement's own parcel; its delivery opens its own 7-day window."""

    carrier: str
    tracking_no: str
    shipped_at: datetime


@dataclass(frozen=True, slots=True)
class Close:
    notes: str | None = None


Command = (
    RecordRetention
    | Approve
    | Reject
    | Withdraw
    | AttachEvidence
    | SubmitReturnTracking
    | RecordReceipt
    | RecordInspection
    | Refund
    | RequestIntercept
    | ConfirmIntercept
    | ReportToCarrier
    | RecordCarrierVerdict
    | CreateReship
    | ShipReplacement
    | Close
)

ACTIONS: dict[type[Any], Action] = {
    RecordRetention: Action.record_retention,
    Approve: Action.approve,
    Reject: Action.reject,
    Withdraw: Action.withdraw,
    AttachEvidence: Action.attach_evidence,
    SubmitReturnTracking: Action.submit_return_tracking,
    RecordReceipt: Action.record_receipt,
    RecordInspection: Action.record_inspection,
    Refund: Action.refund,
    RequestIntercept: Action.request_intercept,
    ConfirmIntercept: Action.confirm_intercept,
    ReportToCarrier: Action.report_to_carrier,
    RecordCarrierVerdict: Action.record_carrier_verdict,
    CreateReship: Action.create_reship,
    ShipReplacement: Action.ship_replacement,
    Close: Action.close,
}
COMMANDS: dict[Action, type[Any]] = {action: command for command, action in ACTIONS.items()}


def from_request(action: Action, fields: dict[str, Any], **prepared: Any) -> Command:
    """The command of `action` from the request's fields (None = not sent) and what the service prepared
    (counts, due times, ids). A field the command needs and the request lacks is an InvalidRequest."""
    kind = COMMANDS[action]
    values: dict[str, Any] = {}
    for spec in dataclass_fields(kind):
        value = prepared.get(spec.name, fields.get(spec.name))
        if value is not None:
            values[spec.name] = value
        elif spec.default is MISSING:
            raise InvalidRequest(spec.name, f"{action} needs {spec.name}")
    return kind(**values)
