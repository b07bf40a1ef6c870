"""The case state machine: which action may move a case from which status, and by whom.

Pure: the handlers do the I/O (refunds, reship orders, registers, events) once a move is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aftersales_shared.auth import Role


class CaseStatus(StrEnum):
    awaiting_evidence = "awaiting_evidence"
    open = "open"  # awaiting support
    retention = "retention"
    approved = "approved"
    awaiting_return = "awaiting_return"
    return_received = "return_received"
    awaiting_carrier = "awaiting_carrier"
    intercepting = "intercepting"
    refunded = "refunded"
    exchanged = "exchanged"
    reshipped = "reshipped"
    retained = "retained"
    rejected = "rejected"
    withdrawn = "withdrawn"
    closed = "closed"


class Action(StrEnum):
    record_retention = "record_retention"
    approve = "approve"
    reject = "reject"
    withdraw = "withdraw"
    attach_evidence = "attach_evidence"
    submit_return_tracking = "submit_return_tracking"
    record_receipt = "record_receipt"
    record_inspection = "record_inspection"
    refund = "refund"
    request_intercept = "request_intercept"
    confirm_intercept = "confirm_intercept"
    report_to_carrier = "report_to_carrier"
    record_carrier_verdict = "record_carrier_verdict"
    create_reship = "create_reship"
    ship_replacement = "ship_replacement"
    close = "close"


S = CaseStatus
FINAL = frozenset({S.retained, S.rejected, S.withdrawn, S.closed})
# Statuses whose money or goods are granted or still may be: they count against R-COMP-CAP.
RELEASED = frozenset({S.retained, S.rejected, S.withdrawn})
ACTIVE = frozenset(S) - FINAL
ALL_ROLES = frozenset(Role)
SUPPORT = frozenset({Role.support})
WAREHOUSE = frozenset({Role.warehouse, Role.support})


@dataclass(frozen=True)
class Move:
    roles: frozenset[Role]
    sources: frozenset[CaseStatus]
    hint: str  # what the caller should do instead when the case is elsewhere


MOVES: dict[Action, Move] = {
    Action.attach_evidence: Move(
        frozenset({Role.storefront, Role.support}),
        ACTIVE,
        "evidence can be attached while the case is active",
    ),
    Action.record_retention: Move(
        SUPPORT, frozenset({S.retention, S.open}), "retention is recorded before approval"
    ),
    Action.approve: Move(
        SUPPORT, frozenset({S.open}), "approve a case that is open (evidence complete, retention recorded)"
    ),
    Action.reject: Move(
        SUPPORT, ACTIVE - {S.refunded, S.exchanged, S.reshipped}, "the case is already settled"
    ),
    Action.withdraw: Move(
        frozenset({Role.storefront, Role.support}),
        ACTIVE - {S.refunded, S.exchanged, S.reshipped},
        "the case is already settled",
    ),
    Action.submit_return_tracking: Move(
        frozenset({Role.storefront, Role.support}),
        frozenset({S.awaiting_return}),
        "return tracking is accepted once a return is approved",
    ),
    Action.record_receipt: Move(
        WAREHOUSE, frozenset({S.awaiting_return}), "only an awaited return can arrive"
    ),
    Action.record_inspection: Move(
        WAREHOUSE,
        # R-INSPECT: the inbound inspection of a received return, or a check while support decides
        frozenset({S.return_received, S.open, S.awaiting_carrier}),
        "inspect a received return, or record a check while the case is open",
    ),
    Action.refund: Move(
        SUPPORT,
        frozenset({S.approved, S.return_received}),
        "refund an approved case, or a received and inspected return",
    ),
    Action.request_intercept: Move(SUPPORT, frozenset({S.approved}), "approve the case first"),
    Action.confirm_intercept: Move(WAREHOUSE, frozenset({S.intercepting}), "request an intercept first"),
    Action.report_to_carrier: Move(
        SUPPORT, frozenset({S.open, S.approved, S.awaiting_evidence}), "report an open case to the carrier"
    ),
    Action.record_carrier_verdict: Move(
        SUPPORT, frozenset({S.awaiting_carrier}), "report to the carrier first"
    ),
    Action.create_reship: Move(SUPPORT, frozenset({S.approved}), "approve the reship first"),
    Action.ship_replacement: Move(  # R-EXCHANGE-7D: the replacement ships once the exchange is approved
        WAREHOUSE,
        frozenset({S.awaiting_return, S.return_received, S.exchanged}),
        "the replacement ships once the exchange is approved",
    ),
    Action.close: Move(
        SUPPORT,
        # `open`: a consultation is closed once answered (R-USAGE); other open cases are refused
        frozenset({S.open, S.approved, S.refunded, S.exchanged, S.reshipped, S.awaiting_carrier}),
        "close a settled case",
    ),
}


def after_intake(evidence_missing: int, needs_retention: bool) -> CaseStatus:
    """Where a new case, or one whose evidence just arrived, waits. R-EVIDENCE, R-RETENTION."""
    if evidence_missing > 0:
        return S.awaiting_evidence
    return S.retention if needs_retention else S.open
