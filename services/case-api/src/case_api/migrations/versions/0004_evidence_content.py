"""evidence: what decoding found (format, width, height, duration); reuse flagged without another shop's order

`evidence` gains `format`, `width`, `height` and `duration_seconds` (null for files uploaded before, which
were only sniffed). `case_evidence` gains `reused`; `reused_from_order_id` keeps only orders of the case's own
shop, in the table and in the timeline's `attach_evidence` entries. The downgrade drops the new columns; the
order ids of other shops it removed are not restored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDERS = sa.table("orders", sa.column("order_id"), sa.column("shop_id"))
CASES = sa.table("cases", sa.column("id"), sa.column("shop_id"))
EVENTS = sa.table(
    "case_events", sa.column("id"), sa.column("case_id"), sa.column("action"), sa.column("data", sa.JSON)
)


def upgrade() -> None:
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("duration_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("case_evidence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reused", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE case_evidence SET reused = true WHERE reused_from_order_id IS NOT NULL")
    op.execute(
        "UPDATE case_evidence SET reused_from_order_id = NULL WHERE reused_from_order_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM orders o JOIN cases c ON c.shop_id = o.shop_id "
        "WHERE c.id = case_evidence.case_id AND o.order_id = case_evidence.reused_from_order_id)"
    )
    _scrub_timeline()


def _scrub_timeline() -> None:
    """The same in the timeline: each attached file says `reused`, and names only an order of its shop."""
    bind = op.get_bind()
    shop_of = {
        order_id: shop_id
        for order_id, shop_id in bind.execute(sa.select(ORDERS.c.order_id, ORDERS.c.shop_id))
    }
    rows = bind.execute(
        sa.select(EVENTS.c.id, EVENTS.c.data, CASES.c.shop_id)
        .join(CASES, CASES.c.id == EVENTS.c.case_id)
        .where(EVENTS.c.action == "attach_evidence")
    ).all()
    for event_id, data, shop_id in rows:
        if not isinstance(data, dict) or not isinstance(data.get("attached"), list):
            continue
        attached = []
        for item in data["attached"]:
            if isinstance(item, dict) and "reused" not in item:
                other = item.get("reused_from_order_id")
                item = {
                    **item,
                    "reused": other is not None,
                    "reused_from_order_id": other if other and shop_of.get(other) == shop_id else None,
                }
            attached.append(item)
        if attached != data["attached"]:
            bind.execute(
                sa.update(EVENTS).where(EVENTS.c.id == event_id).values(data={**data, "attached": attached})
            )


def downgrade() -> None:
    with op.batch_alter_table("case_evidence", schema=None) as batch_op:
        batch_op.drop_column("reused")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_column("duration_seconds")
        batch_op.drop_column("height")
        batch_op.drop_column("width")
        batch_op.drop_column("format")
