"""The body of every service's Alembic env.py: online migrations over an async engine."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

log = logging.getLogger(__name__)


def _migrate(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str, metadata: MetaData) -> None:
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_migrate, metadata)
    await engine.dispose()


def run(metadata: MetaData, default_url: str) -> None:
    """Migrate the database named by `-x url=...`, the config's sqlalchemy.url, or the service settings."""
    config: Any = context.config
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or default_url
    )
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection, metadata)
    else:
        asyncio.run(_run_async(url, metadata))


def alembic_config(service_dir: Path, url: str) -> Any:
    from alembic.config import Config

    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def wait_for_database(url: str, seconds: float, interval: float = 1.0) -> None:
    """Until the database answers (a prestart step may start before its server does); raises the last
    connection error after `seconds`."""
    from sqlalchemy import text

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        while True:
            try:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                return
            except (OSError, SQLAlchemyError) as exc:
                if loop.time() + interval > deadline:
                    raise
                log.info("waiting for the database: %s", type(exc).__name__)
                await asyncio.sleep(interval)
    finally:
        await engine.dispose()


async def upgrade(service_dir: Path, url: str, revision: str = "head") -> None:
    """`alembic upgrade head` from async code (Alembic runs its own loop, so in a thread)."""
    from alembic import command

    await asyncio.to_thread(command.upgrade, alembic_config(service_dir, url), revision)


# The tables every service has (outbox, inbox: outbox.py; api_keys: auth.py), defined once. Each service's
# history calls these at the revisions that made them, so that the three databases get the same schema.


def create_shared_tables() -> None:
    """outbox, inbox and api_keys as each service's first revision made them."""
    text, instant = AutoString, UTCDateTime
    op.create_table(
        "api_keys",
        sa.Column("id", text(), nullable=False),
        sa.Column("name", text(), nullable=False),
        sa.Column("key_hash", text(), nullable=False),
        sa.Column("prefix", text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("shops", sa.JSON(), nullable=True),
        sa.Column("created_at", instant(), nullable=False),
        sa.Column("revoked_at", instant(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_key_hash"), ["key_hash"], unique=True)
    op.create_table(
        "inbox",
        sa.Column("consumer_group", text(), nullable=False),
        sa.Column("event_id", text(), nullable=False),
        sa.Column("processed_at", instant(), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "event_id"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", text(), nullable=False),
        sa.Column("topic", text(), nullable=False),
        sa.Column("key", text(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", instant(), nullable=False),
        sa.Column("sent_at", instant(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_sent_at"), ["sent_at"], unique=False)


def drop_shared_tables() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_sent_at"))
    op.drop_table("outbox")
    op.drop_table("inbox")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_key_hash"))
    op.drop_table("api_keys")


def create_inbox_processed_at_index() -> None:
    """For the retention purge. Concurrently on PostgreSQL: the consumers of the replicas still running
    keep writing to the inbox."""
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_inbox_processed_at"),
            "inbox",
            ["processed_at"],
            unique=False,
            postgresql_concurrently=True,
        )


def drop_inbox_processed_at_index() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(op.f("ix_inbox_processed_at"), table_name="inbox", postgresql_concurrently=True)


def add_api_key_expiry() -> None:
    """api_keys.expires_at: nullable, no default, so every existing key keeps working until revoked."""
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))


def drop_api_key_expiry() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
