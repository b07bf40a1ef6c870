"""Staff accounts: Argon2id passwords, roles, shops, and the rule that one enabled admin always remains."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from aftersales_shared.problems import Problem, conflict, not_found
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import StaffAccount

log = logging.getLogger(__name__)

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MIN_PASSWORD, MAX_PASSWORD = 8, 256


class StaffRole(StrEnum):
    support = "support"  # case actions, retention, approvals, cashback verification (in the services)
    ops = "ops"  # everything readable, registers, payout reviews, scans (in the services)
    admin = "admin"  # manages the console's accounts; no role in the services


# Argon2id (argon2-cffi's default type) with its RFC 9106 low-memory parameters: 64 MiB, 3 passes.
HASHER = PasswordHasher()
# Verified against when the username is unknown, so that an unknown name costs what a known one does.
_UNKNOWN_USER_HASH = HASHER.hash("no such account: this hash only spends the time a real check takes")


async def hash_password(password: str) -> str:
    """Argon2id, off the event loop (it takes a good part of a second on purpose)."""
    return await asyncio.to_thread(HASHER.hash, password)


def password_matches(account: StaffAccount | None, password: str) -> bool:
    """Whether `password` is the account's; with no account, as slow as a real check, and False."""
    try:
        HASHER.verify(account.password_hash if account else _UNKNOWN_USER_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return account is not None


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Problem(
            422,
            "weak_password",
            "Password refused",
            f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            message_zh=f"密码长度须为 {MIN_PASSWORD} 至 {MAX_PASSWORD} 个字符。",
            message_en=f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
        )


async def get_account(session: AsyncSession, username: str) -> StaffAccount | None:
    return await session.get(StaffAccount, username)


async def list_accounts(session: AsyncSession) -> list[StaffAccount]:
    return list((await session.exec(select(StaffAccount).order_by(col(StaffAccount.username)))).all())


async def create_account(
    session: AsyncSession,
    *,
    username: str,
    display_name: str,
    password: str,
    roles: Iterable[StaffRole],
    shops: Iterable[str] | None,
    now: datetime,
) -> StaffAccount:
    check_password(password)
    if await get_account(session, username) is not None:
        raise conflict("account_exists", f"there is an account {username!r} already")
    account = StaffAccount(
        username=username,
        display_name=display_name,
        password_hash=await hash_password(password),
        roles=sorted({StaffRole(r).value for r in roles}),
        shops=None if shops is None else sorted(set(shops)),
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    await session.flush()
    log.info("staff account %s created with roles %s", username, ",".join(account.roles))
    return account


async def require_account(session: AsyncSession, username: str) -> StaffAccount:
    account = await get_account(session, username)
    if account is None:
        raise not_found("account", username)
    return account


async def ensure_an_admin_remains(session: AsyncSession) -> None:
    """After a change (flushed): refuse it when no enabled admin would be left (409)."""
    accounts = await list_accounts(session)
    if not any(a.disabled_at is None and StaffRole.admin in a.roles for a in accounts):
        raise conflict(
            "last_admin",
            "this change would leave no enabled admin; make another admin first",
            message_zh="此操作后将没有可用的管理员账号,请先指定另一位管理员。",
            message_en="This would leave no enabled admin. Make someone else an admin first.",
        )


async def no_account_yet(session: AsyncSession) -> bool:
    return (await session.exec(select(StaffAccount.username).limit(1))).first() is None
