"""inbox: an index on processed_at, for the retention purge

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:45:00
"""

from collections.abc import Sequence

from aftersales_shared import migrations as shared

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    shared.create_inbox_processed_at_index()


def downgrade() -> None:
    shared.drop_inbox_processed_at_index()
