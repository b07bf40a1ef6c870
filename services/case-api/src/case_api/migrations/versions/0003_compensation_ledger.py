"""the compensation ledger: every grant reserved per order line, released or granted exactly once

Replaces `compensations` (grants only) with `ledger_entries`, which also holds what open cases and unpaid
cashback tasks reserve; cashback tasks gain `postage_receipt`, `cancelled_at` and `clawback_requested_at`.
The upgrade books today's open cases and unpaid tasks as reservations, so the cap holds from the first
request after it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:00:00
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_WHERE = "status <> 'released' AND new_order_id IS NOT NULL"
# Case statuses whose money is no longer promised (the workflow's RELEASED, and closed).
RELEASED_CASES = ("retained", "rejected", "withdrawn", "closed")


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("line_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("bucket", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("cashback_task_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("new_order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("new_line_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_entries_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entries_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_cashback_task_id"), ["cashback_task_id"], unique=False
        )
        batch_op.create_index(
            "uq_ledger_entries_price_claim",
            ["new_order_id", "new_line_id"],
            unique=True,
            sqlite_where=sa.text(LIVE_WHERE),
            postgresql_where=sa.text(LIVE_WHERE),
        )
    with op.batch_alter_table("cashback_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("postage_receipt", sa.Numeric(precision=12, scale=2), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("clawback_requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    _book_existing_grants()
    with op.batch_alter_table("compensations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compensations_order_id"))
        batch_op.drop_index(batch_op.f("ix_compensations_case_id"))
    op.drop_table("compensations")


def _book_existing_grants() -> None:
    """Granted compensations stay granted (an approved, unpaid task's stays reserved); open cases and unpaid
    tasks that had booked nothing reserve what they may still grant."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []

    def entry(order_id: str, line_id: str, kind: str, amount: Decimal, status: str, **ids: object) -> None:
        if Decimal(amount) > 0:
            bucket = "postage" if kind == "shipping_fee" else "goods"
            rows.append(
                {"id": f"led_{uuid4().hex[:24]}", "order_id": order_id, "line_id": line_id, "bucket": bucket,
                 "kind": kind, "amount": Decimal(amount), "status": status, "case_id": ids.get("case_id"),
                 "cashback_task_id": ids.get("cashback_task_id"), "new_order_id": None, "new_line_id": None,
                 "created_at": now, "updated_at": now}
            )

    tasks = {row.id: row for row in bind.execute(sa.text("SELECT id, order_id, line_id, case_id, reason, amount, status FROM cashback_tasks"))}
    booked: set[str] = set()
    for comp in bind.execute(sa.text("SELECT order_id, line_id, kind, amount, case_id, cashback_task_id FROM compensations")):
        task = tasks.get(comp.cashback_task_id) if comp.cashback_task_id else None
        status = "reserved" if task is not None and task.status == "approved" else "granted"
        entry(comp.order_id, comp.line_id, comp.kind, comp.amount, status,
              case_id=comp.case_id, cashback_task_id=comp.cashback_task_id)
        booked |= {comp.case_id, comp.cashback_task_id} - {None}
    for case in bind.execute(sa.text("SELECT id, order_id, remedy, status, line_amounts, details FROM cases")):
        if case.id in booked or case.status in RELEASED_CASES:
            continue
        kind = {"reship": "reship", "price_protection": "price_protection", "cashback": "cashback"}.get(
            case.remedy, "refund"
        )
        line_amounts = _json(case.line_amounts)
        for line_id, amount in line_amounts.items():
            entry(case.order_id, line_id, kind, Decimal(amount), "reserved", case_id=case.id)
        for line_id, amount in _json(case.details).get("shipping_amounts", {}).items():
            entry(case.order_id, line_id, "shipping_fee", Decimal(amount), "reserved", case_id=case.id)
    for task in tasks.values():
        if task.id not in booked and task.status in ("pending_verification", "approved"):
            kind = "shipping_fee" if task.reason == "shipping_fee" else "cashback"
            entry(task.order_id, task.line_id, kind, task.amount, "reserved", cashback_task_id=task.id)
    if rows:
        op.bulk_insert(sa.table("ledger_entries", *(sa.column(name) for name in rows[0])), rows)


def _json(value: object) -> dict[str, object]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def downgrade() -> None:
    op.create_table(
        "compensations",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("line_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("cashback_task_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("compensations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compensations_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_compensations_order_id"), ["order_id"], unique=False)
    # Only grants were compensations; reservations were implied by the open cases and tasks.
    op.execute(
        "INSERT INTO compensations (id, order_id, line_id, kind, amount, case_id, cashback_task_id, created_at) "
        "SELECT id, order_id, line_id, kind, amount, case_id, cashback_task_id, created_at FROM ledger_entries "
        "WHERE status = 'granted' OR (status = 'reserved' AND cashback_task_id IS NOT NULL)"
    )
    with op.batch_alter_table("cashback_tasks", schema=None) as batch_op:
        batch_op.drop_column("clawback_requested_at")
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("postage_receipt")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("uq_ledger_entries_price_claim")
        batch_op.drop_index(batch_op.f("ix_ledger_entries_cashback_task_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_case_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_entries_order_id"))
    op.drop_table("ledger_entries")
