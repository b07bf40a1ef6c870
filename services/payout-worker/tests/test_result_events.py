"""A batch's results are queued from the ledger rows without validating them again: the events carry what
a validated PayoutResult would."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aftersales_shared.events import PayoutResult
from payout_worker.handlers import result_of
from payout_worker.models import PayoutStatus

PAID_AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ROW = {
    "id": "pay_1",
    "cashback_task_id": "cb_1",
    "order_id": "TB1",
    "amount": Decimal("12.30"),
    "out_biz_no": "pay_1",
    "provider_order_id": "2026112600001",
}


@pytest.mark.parametrize(
    "change",
    [
        {"status": PayoutStatus.paid, "paid_at": PAID_AT, "failure_code": None},
        {"status": PayoutStatus.failed, "paid_at": None, "failure_code": "PAYEE_NOT_EXIST"},
    ],
)
def test_a_result_from_a_row_is_the_validated_result(change: dict[str, object]) -> None:
    row = {**ROW, **change}
    expected = PayoutResult(
        payout_id="pay_1",
        cashback_task_id="cb_1",
        order_id="TB1",
        amount=Decimal("12.30"),
        status=str(change["status"]),  # type: ignore[arg-type]
        out_biz_no="pay_1",
        provider_reference="2026112600001",
        failure_code=change["failure_code"],  # type: ignore[arg-type]
        paid_at=change["paid_at"],  # type: ignore[arg-type]
    )
    made = result_of(row)
    assert made.model_dump_json() == expected.model_dump_json()
    assert PayoutResult.model_validate_json(made.model_dump_json()) == expected
    assert type(made.status) is str
