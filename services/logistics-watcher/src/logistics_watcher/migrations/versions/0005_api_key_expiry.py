"""api_keys.expires_at: a key may stop working at a set time (keys create --expires-in / --expires-at)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

from aftersales_shared import migrations as shared

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    shared.add_api_key_expiry()


def downgrade() -> None:
    shared.drop_api_key_expiry()
