"""money exact in SQLite: amounts held as integer cents (MoneyType)

SQLite's NUMERIC went through a float, so a large amount came back changed and sums were floats; the column
stays declared NUMERIC(12, 2) and now holds integer cents there. PostgreSQL is unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {"payouts": ("amount",)}


def _rewrite(expression: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.execute(
                f"UPDATE {table} SET {column} = {expression.format(column=column)} WHERE {column} IS NOT NULL"
            )


def upgrade() -> None:
    _rewrite("CAST(ROUND({column} * 100) AS INTEGER)")


def downgrade() -> None:
    _rewrite("{column} / 100.0")
