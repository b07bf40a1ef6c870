"""The domain's refusals as problem+json, mapped once for the whole service (API.md, Errors)."""

from __future__ import annotations

from aftersales_shared.problems import Problem, conflict, translate

from ..domain import case as dc
from ..domain import model as dm


def refusal(exc: dm.PolicyRefusal) -> Problem:
    """422 `policy_refused`: the rule, courteous zh/en messages, and the facts that decided it."""
    return Problem(
        422,
        "policy_refused",
        "Refused by the after-sales policy",
        exc.message_en,
        rule=exc.rule,
        message_zh=exc.message_zh,
        message_en=exc.message_en,
        facts=exc.facts,
    )


def invalid(exc: dm.InvalidRequest) -> Problem:
    """422 `validation_failed`: a request malformed whatever the order says."""
    return Problem(
        422,
        "validation_failed",
        "Invalid request",
        exc.message,
        errors=[{"field": exc.field, "message": exc.message}],
    )


def case_conflict(exc: dc.CaseConflict) -> Problem:
    """409: the case is not in a state for this command (e.g. `invalid_transition`, `not_a_refund`)."""
    return conflict(exc.code, exc.detail, **exc.facts)


def install() -> None:
    translate(dm.PolicyRefusal, refusal)
    translate(dm.InvalidRequest, invalid)
    translate(dc.CaseConflict, case_conflict)
