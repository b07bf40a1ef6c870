"""Core statements on a session's connection, inside its transaction: the bulk and set-based work,
where ORM objects would only cost time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import CursorResult, Executable
from sqlmodel.ext.asyncio.session import AsyncSession


async def execute(
    session: AsyncSession,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> CursorResult[Any]:
    connection = await session.connection()
    return await connection.execute(statement, params)


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name
