"""The principal cache: a key found is not looked up again for `seconds`; a revocation takes effect once
they pass, an expiry at once; unknown keys are never remembered; 0 turns the cache off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aftersales_shared.auth import ApiKey, PrincipalCache, Role, authenticate, create_key
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.problems import Problem
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class Timer:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[str]]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/keys.db")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=[ApiKey.__table__]))  # type: ignore[attr-defined]
    lookups: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "WHERE api_keys.key_hash" in statement:
            lookups.append(statement)

    yield session_factory(engine), lookups
    await engine.dispose()


async def _key(sessions: async_sessionmaker[AsyncSession], **kwargs: object) -> str:
    async with unit_of_work(sessions) as session:
        _, secret = await create_key(
            session, name="shop", roles=[Role.storefront], shops=["a"], now=NOW, **kwargs
        )  # type: ignore[arg-type]
    return secret


async def _who(
    sessions: async_sessionmaker[AsyncSession], secret: str, cache: PrincipalCache, now: datetime = NOW
) -> str:
    async with sessions() as session:
        return (await authenticate(session, f"Bearer {secret}", now=now, cache=cache)).name


async def _revoke(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(sessions) as session:
        for key in (await session.exec(select(ApiKey))).all():
            key.revoked_at = NOW
            session.add(key)


async def test_a_key_found_is_remembered_until_the_seconds_pass(
    sessions: tuple[async_sessionmaker[AsyncSession], list[str]],
) -> None:
    factory, lookups = sessions
    secret, timer = await _key(factory), Timer()
    cache = PrincipalCache(5, timer=timer)
    assert [await _who(factory, secret, cache) for _ in range(3)] == ["shop"] * 3
    assert len(lookups) == 1
    await _revoke(factory)
    timer.at += 4.9
    assert await _who(factory, secret, cache) == "shop"  # within the cache's seconds: still known
    timer.at += 0.1
    with pytest.raises(Problem) as refused:
        await _who(factory, secret, cache)
    assert refused.value.status == 401
    assert len(lookups) == 2


async def test_an_expiry_counts_at_every_request(
    sessions: tuple[async_sessionmaker[AsyncSession], list[str]],
) -> None:
    factory, _ = sessions
    secret = await _key(factory, expires_at=NOW + timedelta(minutes=1))
    cache = PrincipalCache(60, timer=Timer())
    assert await _who(factory, secret, cache) == "shop"
    with pytest.raises(Problem) as refused:
        await _who(factory, secret, cache, now=NOW + timedelta(minutes=1))
    assert refused.value.status == 401


async def test_unknown_keys_are_not_remembered_and_zero_turns_it_off(
    sessions: tuple[async_sessionmaker[AsyncSession], list[str]],
) -> None:
    factory, lookups = sessions
    cache = PrincipalCache(60, timer=Timer())
    for _ in range(2):
        with pytest.raises(Problem):
            await _who(factory, "ask_unknown", cache)
    assert len(lookups) == 2
    secret, off = await _key(factory), PrincipalCache(0, timer=Timer())
    lookups.clear()
    assert [await _who(factory, secret, off) for _ in range(2)] == ["shop"] * 2
    assert len(lookups) == 2
