"""The same-origin proxy: /api/<service>/v1/... is the service's /v1/..., called for the signed-in person
with a fresh staff token. The service's answer (status, body, the headers that matter) comes back as it is,
streamed, so refusals reach the browser word for word and downloads are not held in memory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from aftersales_shared.problems import Problem, not_found
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..tokens import token_for
from .deps import SignedInDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["proxy"])

FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key", "if-match", "x-request-id")
RETURNED_HEADERS = (
    "content-type",
    "content-disposition",
    "content-encoding",
    "cache-control",
    "x-content-type-options",
    "etag",
    "location",
    "retry-after",
    "x-request-id",
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route(
    "/api/{service}/{path:path}",
    methods=METHODS,
    responses={401: {"description": "not signed in"}, 502: {"description": "the service did not answer"}},
)
async def proxy(service: str, path: str, request: Request, who: SignedInDep) -> Response:
    """Call `service` (case-api, logistics-watcher, payout-worker) at /`path` for the signed-in person."""
    app = request.app
    base = app.state.settings.service_urls().get(service)
    # The path as the browser encoded it, so that an id is passed on exactly as it was sent.
    raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    forwarded = raw_path.removeprefix(f"/api/{service}/")
    if base is None or not path.startswith("v1/") or ".." in forwarded.split("/"):
        raise not_found("path", request.url.path)
    headers = {name: value for name in FORWARDED_REQUEST_HEADERS if (value := request.headers.get(name))}
    headers["authorization"] = "Bearer " + token_for(
        app.state.token_key, who.account, app.state.clock.now(), app.state.token_lifetime
    )
    client: httpx.AsyncClient = app.state.upstream
    upstream = client.build_request(
        request.method,
        f"{base.rstrip('/')}/{forwarded}",
        params=request.url.query.encode() or None,
        headers=headers,
        content=request.stream() if request.method in ("POST", "PUT", "PATCH") else None,
    )
    try:
        answer = await client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        log.warning("%s did not answer: %s", service, type(exc).__name__)
        raise Problem(
            502,
            "upstream_unavailable",
            "Service unavailable",
            f"{service} did not answer",
            message_zh="服务暂时不可用,请稍后重试。",
            message_en="The service is unavailable. Please try again shortly.",
        ) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:  # also when the browser goes away mid-download: the service's connection is let go
            await answer.aclose()

    return StreamingResponse(
        body(),
        status_code=answer.status_code,
        headers={name: value for name in RETURNED_HEADERS if (value := answer.headers.get(name))},
    )
