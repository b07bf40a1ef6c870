"""Exchange replacements, consultations, inspections

The inspections register (`inspections`): one row per inspection, with the size marks on the hang tag, the
wash label and the neck label, worn or washed, and the parcel's weight against the expected one (R-INSPECT).
Replacements and consultations live in the case's details and need no column.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("shop_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("remedy", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("tags_on", sa.Boolean(), nullable=True),
        sa.Column("worn", sa.Boolean(), nullable=True),
        sa.Column("washed", sa.Boolean(), nullable=True),
        sa.Column("hang_tag_size", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("wash_label_size", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("neck_label_size", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("sizes_agree", sa.Boolean(), nullable=True),
        sa.Column("parcel_weight_g", sa.Integer(), nullable=True),
        sa.Column("expected_weight_g", sa.Integer(), nullable=True),
        sa.Column("weight_difference_g", sa.Integer(), nullable=True),
        sa.Column("notes", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inspections_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inspections_recorded_at"), ["recorded_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inspections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inspections_recorded_at"))
        batch_op.drop_index(batch_op.f("ix_inspections_case_id"))
    op.drop_table("inspections")
