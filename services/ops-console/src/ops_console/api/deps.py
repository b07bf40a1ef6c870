"""The signed-in person of a request, and the CSRF check on every state-changing call."""

from __future__ import annotations

from typing import Annotated

from aftersales_shared.problems import Problem
from aftersales_shared.web import SessionDep
from fastapi import Cookie, Depends, Header, Request

from ..accounts import StaffRole
from ..sessions import COOKIE, SignedIn, current

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def not_signed_in() -> Problem:
    return Problem(
        401,
        "unauthenticated",
        "Not signed in",
        "sign in first (POST /api/session); the session may have expired",
        message_zh="请先登录;会话可能已过期。",
        message_en="Please sign in; your session may have expired.",
    )


async def signed_in(
    request: Request,
    session: SessionDep,
    session_id: Annotated[str | None, Cookie(alias=COOKIE, include_in_schema=False)] = None,
    csrf_token: Annotated[str | None, Header(alias="X-CSRF-Token")] = None,
) -> SignedIn:
    """401 without a current session; 403 for a state-changing call whose X-CSRF-Token is not the
    session's."""
    app = request.app
    who = await current(session, session_id, app.state.clock.now(), app.state.settings)
    await session.commit()  # its last use, or the deletion of an expired session
    if who is None:
        raise not_signed_in()
    if request.method not in SAFE_METHODS and not who.csrf_matches(csrf_token):
        raise Problem(
            403,
            "csrf_failed",
            "CSRF check failed",
            "send the session's csrf_token in the X-CSRF-Token header",
            message_zh="页面已过期,请刷新后重试。",
            message_en="This page has expired. Please reload and try again.",
        )
    return who


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


async def admin(who: SignedInDep) -> SignedIn:
    if StaffRole.admin not in who.account.roles:
        raise Problem(
            403,
            "forbidden",
            "Forbidden",
            "managing accounts needs the admin role",
            message_zh="管理账号需要管理员权限。",
            message_en="Managing accounts needs the admin role.",
        )
    return who


AdminDep = Annotated[SignedIn, Depends(admin)]
