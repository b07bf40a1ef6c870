"""Sign in, who is signed in, sign out."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from aftersales_shared.fields import NulFree
from aftersales_shared.problems import problem_response
from aftersales_shared.web import SessionDep
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from ..accounts import MAX_PASSWORD
from ..models import StaffAccount
from ..sessions import COOKIE, LockedOut, SignedIn, forget_old, sign_in
from .deps import SignedInDep

router = APIRouter(prefix="/api/session", tags=["session"])


class Credentials(NulFree):
    username: Annotated[
        str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=64)
    ]
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class User(BaseModel):
    username: str
    display_name: str
    roles: list[str]
    shops: list[str] | None = Field(description="the shops served; null: every shop")

    @classmethod
    def of(cls, account: StaffAccount) -> User:
        return cls(
            username=account.username,
            display_name=account.display_name,
            roles=account.roles,
            shops=account.shops,
        )


class SessionOut(BaseModel):
    user: User
    csrf_token: str = Field(description="send it as X-CSRF-Token on every POST, PUT, PATCH and DELETE")


def _session_out(who: SignedIn) -> SessionOut:
    return SessionOut(user=User.of(who.account), csrf_token=who.session.csrf_token)


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "wrong username or password, or a disabled account"},
    429: {"description": "locked out after repeated failures; see Retry-After"},
}


@router.post("", responses=PROBLEMS)
async def create_session(body: Credentials, request: Request, session: SessionDep) -> Response:
    """Sign in: the session cookie (HttpOnly, SameSite=Strict) and the CSRF token."""
    settings, now = request.app.state.settings, request.app.state.clock.now()
    try:
        who, session_id = await sign_in(session, body.username, body.password, now, settings)
    except LockedOut as locked:  # a refused attempt is recorded by sign_in itself
        return problem_response(locked, headers={"Retry-After": str(locked.retry_after)})
    await forget_old(session, now, settings)
    await session.commit()
    response = JSONResponse(_session_out(who).model_dump(mode="json"))
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(timedelta(hours=settings.session_absolute_hours).total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookie,
    )
    return response


@router.get("", responses={401: {"description": "not signed in"}})
async def read_session(who: SignedInDep) -> SessionOut:
    return _session_out(who)


@router.delete("", status_code=204, responses={401: {"description": "not signed in"}})
async def delete_session(who: SignedInDep, request: Request, session: SessionDep) -> Response:
    """Sign out: the session ends here and the cookie is cleared."""
    await session.delete(who.session)
    await session.commit()
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.app.state.settings.secure_cookie
    )
    return response
