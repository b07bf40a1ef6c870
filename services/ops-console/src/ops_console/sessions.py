"""Sign-in, sessions and the lockout. The browser holds an opaque random session id in an HttpOnly cookie;
the database holds only its SHA-256, the CSRF token, and when it began and was last used."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from aftersales_shared.clock import as_utc
from aftersales_shared.problems import Problem
from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .accounts import get_account, password_matches
from .config import Settings
from .models import LoginFailure, StaffAccount, StaffSession

log = logging.getLogger(__name__)

COOKIE = "ops_console_session"
TOUCH_EVERY = timedelta(seconds=30)  # a session's last use is written at most this often


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A session found and current, with its account."""

    session: StaffSession
    account: StaffAccount

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.session.csrf_token.encode())


class LockedOut(Problem):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "locked_out",
            "Too many failed sign-ins",
            f"too many failed sign-ins for this username; try again in {retry_after} seconds",
            retry_after=retry_after,
            message_zh="登录失败次数过多,请稍后再试。",
            message_en="Too many failed sign-ins. Please try again later.",
        )
        self.retry_after = retry_after


def wrong_credentials() -> Problem:
    return Problem(
        401,
        "wrong_credentials",
        "Sign-in refused",
        "the username or password is wrong, or the account is disabled",
        message_zh="用户名或密码错误,或账号已停用。",
        message_en="The username or password is wrong, or the account is disabled.",
    )


async def _lockout_left(
    session: AsyncSession, username: str, now: datetime, settings: Settings, beyond: int = 0
) -> int:
    """Seconds until `username` may try again (0: now): the window after the failure that filled it.
    `beyond`: locked only with this many failures more than the limit (an attempt counting itself)."""
    window, limit = timedelta(minutes=settings.login_window_minutes), settings.login_max_failures + beyond
    failures = (
        await session.exec(
            select(LoginFailure.failed_at)
            .where(LoginFailure.username == username, col(LoginFailure.failed_at) > now - window)
            .order_by(col(LoginFailure.failed_at).desc())
            .limit(limit)
        )
    ).all()
    if len(failures) < limit:
        return 0
    return max(1, math.ceil((as_utc(failures[-1]) + window - now).total_seconds()))


async def sign_in(
    session: AsyncSession, username: str, password: str, now: datetime, settings: Settings
) -> tuple[SignedIn, str]:
    """A new session for the person and its id (for the cookie); 429 while locked out, 401 otherwise.
    Every refusal, for an unknown username too, counts towards that username's lockout. The attempt is
    recorded, and committed, before its password is checked, so that guesses sent in parallel cannot pass
    the limit: one that finds more attempts recorded than the limit gives up unchecked."""
    if left := await _lockout_left(session, username, now, settings):
        raise LockedOut(left)
    attempt = LoginFailure(username=username, failed_at=now)  # a failure unless the password matches
    session.add(attempt)
    await session.commit()
    if await _lockout_left(session, username, now, settings, beyond=1):
        await session.delete(attempt)
        await session.commit()
        raise LockedOut(max(1, await _lockout_left(session, username, now, settings)))
    account = await get_account(session, username)
    matches = await asyncio.to_thread(password_matches, account, password)  # Argon2: off the event loop
    if not matches or account is None or account.disabled_at is not None:
        log.warning("sign-in refused for username %s", username)
        if left := await _lockout_left(session, username, now, settings):
            log.warning("username %s locked out for %s s", username, left)
        raise wrong_credentials()
    await session.exec(delete(LoginFailure).where(col(LoginFailure.username) == username))
    session_id = secrets.token_urlsafe(32)
    staff_session = StaffSession(
        id_hash=hash_session_id(session_id),
        username=username,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
    )
    session.add(staff_session)
    await session.flush()
    log.info("%s signed in", username)
    return SignedIn(staff_session, account), session_id


async def current(
    session: AsyncSession, session_id: str | None, now: datetime, settings: Settings
) -> SignedIn | None:
    """The session whose id the cookie holds, when it is neither idle nor too old and its account is
    enabled; it is marked used now (to TOUCH_EVERY). An expired one is deleted."""
    if not session_id:
        return None
    found = await session.get(StaffSession, hash_session_id(session_id))
    if found is None:
        return None
    idle = now - as_utc(found.last_seen_at) >= timedelta(minutes=settings.session_idle_minutes)
    too_old = now - as_utc(found.created_at) >= timedelta(hours=settings.session_absolute_hours)
    account = await get_account(session, found.username)
    if idle or too_old or account is None or account.disabled_at is not None:
        await session.delete(found)
        return None
    if now - as_utc(found.last_seen_at) >= TOUCH_EVERY:
        found.last_seen_at = now
    return SignedIn(found, account)


async def end_sessions(session: AsyncSession, username: str, *, keep: StaffSession | None = None) -> None:
    """Sign the person out everywhere (a disabled account, a new password), except `keep`."""
    statement = delete(StaffSession).where(col(StaffSession.username) == username)
    if keep is not None:
        statement = statement.where(col(StaffSession.id_hash) != keep.id_hash)
    await session.exec(statement)


async def forget_old(session: AsyncSession, now: datetime, settings: Settings) -> None:
    """Delete sessions past their absolute expiry and failures past the window."""
    await session.exec(
        delete(StaffSession).where(
            col(StaffSession.created_at) < now - timedelta(hours=settings.session_absolute_hours)
        )
    )
    await session.exec(
        delete(LoginFailure).where(
            col(LoginFailure.failed_at) < now - timedelta(minutes=settings.login_window_minutes)
        )
    )
