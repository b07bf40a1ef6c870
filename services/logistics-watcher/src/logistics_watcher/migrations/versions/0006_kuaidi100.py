"""Kuaidi100 subscriptions: each new tracking number, kept until Kuaidi100 has taken it

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kuaidi100_subscriptions",
        sa.Column("tracking_no", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("carrier", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("company", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("shop_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("subscribed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tracking_no"),
    )
    op.create_index(
        "ix_kuaidi100_subscriptions_due", "kuaidi100_subscriptions", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_kuaidi100_subscriptions_due", table_name="kuaidi100_subscriptions")
    op.drop_table("kuaidi100_subscriptions")
