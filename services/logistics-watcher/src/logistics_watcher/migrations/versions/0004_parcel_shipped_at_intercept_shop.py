"""parcels.shipped_at (no scan may be dated before it) and intercept_requests.shop_id (the order's shop)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shipped_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table("intercept_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shop_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    # What the scans already say: the earliest creation or shipment scan of each parcel.
    op.execute(
        "UPDATE parcels SET shipped_at = (SELECT min(scans.occurred_at) FROM scans "
        "WHERE scans.tracking_no = parcels.tracking_no AND scans.status IN ('created', 'picked_up'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("intercept_requests", schema=None) as batch_op:
        batch_op.drop_column("shop_id")
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_column("shipped_at")
