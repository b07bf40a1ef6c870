"""Staff accounts, managed by admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aftersales_shared.fields import ID_MAX_LENGTH, ID_PATTERN, NulFree
from aftersales_shared.web import SessionDep
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field, StringConstraints

from ..accounts import (
    MAX_PASSWORD,
    USERNAME_PATTERN,
    StaffRole,
    check_password,
    create_account,
    ensure_an_admin_remains,
    hash_password,
    list_accounts,
    require_account,
)
from ..models import StaffAccount
from ..sessions import end_sessions
from .deps import AdminDep

router = APIRouter(prefix="/api/accounts", tags=["accounts"])

Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=USERNAME_PATTERN)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShopId = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]
Roles = Annotated[list[StaffRole], Field(min_length=1, max_length=3)]
Shops = Annotated[
    list[ShopId] | None, Field(max_length=200, description="the shops served; null: every shop")
]


class AccountIn(NulFree):
    username: Username
    display_name: DisplayName
    password: Password
    roles: Roles
    shops: Shops


class AccountPatch(NulFree):
    """Only the fields sent change; `password` sets a new one (and signs the person out elsewhere)."""

    display_name: DisplayName | None = None
    roles: Roles | None = None
    shops: Shops = None
    disabled: bool | None = None
    password: Password | None = None


class AccountOut(BaseModel):
    username: str
    display_name: str
    roles: list[str]
    shops: list[str] | None
    disabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, account: StaffAccount) -> AccountOut:
        return cls(
            username=account.username,
            display_name=account.display_name,
            roles=account.roles,
            shops=account.shops,
            disabled=account.disabled_at is not None,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class AccountList(BaseModel):
    items: list[AccountOut]


UsernamePath = Annotated[str, Path(min_length=1, max_length=64, pattern=USERNAME_PATTERN)]


@router.get("")
async def get_accounts(_: AdminDep, session: SessionDep) -> AccountList:
    return AccountList(items=[AccountOut.of(a) for a in await list_accounts(session)])


@router.post("", status_code=201, responses={409: {"description": "the username is taken"}})
async def post_account(body: AccountIn, _: AdminDep, request: Request, session: SessionDep) -> AccountOut:
    account = await create_account(
        session,
        username=body.username,
        display_name=body.display_name,
        password=body.password,
        roles=body.roles,
        shops=body.shops,
        now=request.app.state.clock.now(),
    )
    await session.commit()
    return AccountOut.of(account)


@router.patch(
    "/{username}",
    responses={
        404: {"description": "no such account"},
        409: {"description": "no enabled admin would remain"},
    },
)
async def patch_account(
    username: UsernamePath, body: AccountPatch, who: AdminDep, request: Request, session: SessionDep
) -> AccountOut:
    now = request.app.state.clock.now()
    account = await require_account(session, username)
    sent = body.model_fields_set
    if body.display_name is not None:
        account.display_name = body.display_name
    if body.roles is not None:
        account.roles = sorted({r.value for r in body.roles})
    if "shops" in sent:
        account.shops = None if body.shops is None else sorted(set(body.shops))
    if body.disabled is not None:
        account.disabled_at = (account.disabled_at or now) if body.disabled else None
    if body.password is not None:
        check_password(body.password)
        account.password_hash = await hash_password(body.password)
    account.updated_at = now
    session.add(account)
    await session.flush()
    await ensure_an_admin_remains(session)
    if body.disabled:
        await end_sessions(session, username)
    elif body.password is not None:
        await end_sessions(session, username, keep=who.session)
    await session.commit()
    return AccountOut.of(account)
