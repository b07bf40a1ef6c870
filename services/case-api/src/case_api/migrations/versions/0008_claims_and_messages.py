"""Carrier claims and buyer messages

`carrier_claims`: what a carrier owes the shop for a logistics follow-up entry, and its outcome
(R-CARRIER-CLAIM). `buyer_messages`: every message for the buyer, rendered in zh and en, with its channel
and delivery status (R-MESSAGES).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carrier_claims",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("follow_up_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("shop_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("carrier", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("tracking_no", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("goods_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("postage_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("claimed_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("accepted_amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("paid_amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("refusal_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("claimed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("paid_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["follow_up_id"], ["logistics_follow_up.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("follow_up_id"),
    )
    with op.batch_alter_table("carrier_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_carrier_claims_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_carrier_claims_shop_id"), ["shop_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_carrier_claims_carrier"), ["carrier"], unique=False)
        batch_op.create_index(batch_op.f("ix_carrier_claims_claimed_at"), ["claimed_at"], unique=False)

    op.create_table(
        "buyer_messages",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("shop_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("cashback_task_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("template", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("message_zh", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message_en", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("buyer_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_buyer_messages_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_buyer_messages_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_buyer_messages_channel_status", ["channel", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("buyer_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_buyer_messages_channel_status")
        batch_op.drop_index(batch_op.f("ix_buyer_messages_order_id"))
        batch_op.drop_index(batch_op.f("ix_buyer_messages_case_id"))
    op.drop_table("buyer_messages")
    with op.batch_alter_table("carrier_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_carrier_claims_claimed_at"))
        batch_op.drop_index(batch_op.f("ix_carrier_claims_carrier"))
        batch_op.drop_index(batch_op.f("ix_carrier_claims_shop_id"))
        batch_op.drop_index(batch_op.f("ix_carrier_claims_case_id"))
    op.drop_table("carrier_claims")
