"""payouts: held for review (hold_reason, reviewer), clawback items, and the risk limits' indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_payouts_shop_id_approved_at": ["shop_id", "approved_at"],
    "ix_payouts_payee_account_approved_at": ["payee_account", "approved_at"],
}


def upgrade() -> None:
    # Nullable columns only: the previous version keeps working while replicas roll over.
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("review_note", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("clawback_requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("clawback_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # Concurrently on PostgreSQL: the consumers of the replicas still running keep inserting payouts.
    with op.get_context().autocommit_block():
        for name, columns in INDEXES.items():
            op.create_index(name, "payouts", columns, unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.drop_index(name, table_name="payouts", postgresql_concurrently=True)
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("clawback_reason")
        batch_op.drop_column("clawback_requested_at")
        batch_op.drop_column("review_note")
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("reviewed_by")
        batch_op.drop_column("hold_reason")
