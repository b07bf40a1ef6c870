"""The body of every service's Alembic env.py: online migrations over an async engine."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from alembic import context
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

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
