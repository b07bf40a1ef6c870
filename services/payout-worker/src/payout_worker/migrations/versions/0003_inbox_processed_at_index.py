"""inbox: an index on processed_at, for the retention purge

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Concurrently on PostgreSQL: the consumers of the replicas still running keep writing to the inbox.
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_inbox_processed_at"), "inbox", ["processed_at"], unique=False, postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(op.f("ix_inbox_processed_at"), table_name="inbox", postgresql_concurrently=True)
