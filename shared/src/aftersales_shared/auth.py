"""API keys: stored hashed, each with roles, the shops it may touch (or all shops) and an optional expiry."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .ids import new_id
from .problems import Problem, not_found
from .staff_tokens import StaffClaims, StaffTokenVerifier, looks_like_token

log = logging.getLogger(__name__)


class Role(StrEnum):
    storefront = "storefront"
    warehouse = "warehouse"
    support = "support"
    ops = "ops"


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str
    key_hash: str = Field(index=True, unique=True)
    prefix: str
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    shops: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None  # None: until revoked

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at `now`."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def hash_key(secret: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    roles: frozenset[Role]
    shops: frozenset[str] | None  # None: every shop

    def has_any(self, roles: Iterable[Role]) -> bool:
        return bool(self.roles & set(roles))

    def sees_shop(self, shop_id: str) -> bool:
        return self.shops is None or shop_id in self.shops

    def require(self, *roles: Role) -> Principal:
        if not self.has_any(roles):
            raise Problem(
                403, "forbidden", "Forbidden", f"this key lacks the role: one of {', '.join(sorted(roles))}"
            )
        return self

    def require_shop(
        self, shop_id: str, *, hide: bool = False, what: str = "resource", ident: str | None = None
    ) -> None:
        """403 for another shop's data, or, where existence must not leak, the very 404 that a missing
        `what` named `ident` answers."""
        if self.sees_shop(shop_id):
            return
        if hide:
            raise not_found(what, ident)
        raise Problem(403, "forbidden", "Forbidden", f"this key is not allowed for shop {shop_id!r}")


def system_actor(name: str, *roles: Role) -> Principal:
    """Another service acting on case-api's commands through its events: named in every timeline, with only
    the roles its reactions need (never a made-up key holding them all)."""
    return Principal(key_id=f"system:{name}", name=name, roles=frozenset(roles), shops=None)


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    roles: Iterable[Role],
    shops: Iterable[str] | None,
    now: datetime,
    secret: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is shown once and never stored."""
    secret = secret or "ask_" + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        name=name,
        key_hash=hash_key(secret),
        prefix=secret[:8],
        roles=sorted(Role(r).value for r in roles),
        shops=None if shops is None else sorted(shops),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def ensure_key(session: AsyncSession, *, name: str, secret: str, now: datetime) -> bool:
    """Make `secret` a key with every role for every shop (the embedded mode's DEV_API_KEY), once: a key
    revoked since stays revoked (a restart must not undo a revocation). Whether the key is usable."""
    existing = (await session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))).first()
    if existing is None:
        await create_key(session, name=name, roles=list(Role), shops=None, now=now, secret=secret)
        return True
    if not existing.usable(now):
        log.warning(
            "DEV_API_KEY is key %s, revoked or expired: it stays so; set another DEV_API_KEY for a new one",
            existing.id,
        )
        return False
    return True


def staff_principal(claims: StaffClaims) -> Principal:
    """The person a staff token from ops-console names (staff_tokens.py), with its service roles and shops."""
    return Principal(
        key_id=f"staff:{claims.username}",
        name=f"staff:{claims.username}",
        roles=frozenset(Role(r) for r in claims.roles),
        shops=claims.shops,
    )


class PrincipalCache:
    """The API keys found in the last `seconds` (of real time), by hash, so that a busy client's requests
    do not each look theirs up. A key's expiry still counts at every request; its revocation takes effect
    within `seconds` (0: no cache, every request looks its key up). Unknown keys are never cached."""

    def __init__(self, seconds: float, *, timer: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._timer = timer
        self._found: dict[str, tuple[float, Principal, datetime | None]] = {}

    def get(self, key_hash: str, now: datetime) -> Principal | None:
        entry = self._found.get(key_hash)
        if entry is None:
            return None
        found_at, principal, expires_at = entry
        if self._timer() - found_at >= self.seconds or (expires_at is not None and now >= expires_at):
            del self._found[key_hash]
            return None
        return principal

    def put(self, key_hash: str, principal: Principal, expires_at: datetime | None) -> None:
        if self.seconds > 0:
            if len(self._found) >= 10_000:  # many keys: start again rather than grow without end
                self._found.clear()
            self._found[key_hash] = (self._timer(), principal, expires_at)


async def authenticate(
    session: AsyncSession,
    authorization: str | None,
    *,
    now: datetime,
    staff_tokens: StaffTokenVerifier | None = None,
    cache: PrincipalCache | None = None,
) -> Principal:
    """The caller of a request: 401 for no key, an unknown one, or one revoked or expired at `now`. A staff
    token genuine and current by `staff_tokens` is the person it names; any other is looked up as a key
    (and so answered like an unknown one)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthenticated", "Unauthenticated", "send Authorization: Bearer <api key>")
    if (
        staff_tokens is not None
        and looks_like_token(token.strip())
        and (claims := staff_tokens.verify(token.strip(), now)) is not None
    ):
        return staff_principal(claims)
    key_hash = hash_key(token.strip())
    if cache is not None and (cached := cache.get(key_hash, now)) is not None:
        return cached
    key = (await session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash))).first()
    if key is None or not key.usable(now):
        raise Problem(401, "unauthenticated", "Unauthenticated", "unknown, revoked or expired api key")
    principal = Principal(
        key_id=key.id,
        name=key.name,
        roles=frozenset(Role(r) for r in key.roles),
        shops=None if key.shops is None else frozenset(key.shops),
    )
    if cache is not None:
        cache.put(key_hash, principal, key.expires_at)
    return principal
