"""buyer_messages.next_attempt_at: an SMS the provider did not take (unreachable, busy) is queued again for then

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("buyer_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("buyer_messages", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
