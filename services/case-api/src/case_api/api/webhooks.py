"""Signed webhooks per shop (Standard Webhooks): subscriptions, secret rotation, the delivery log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from aftersales_shared.auth import Principal, Role
from aftersales_shared.fields import ResourceIdPath
from aftersales_shared.idempotency import idempotent, request_hash
from aftersales_shared.ids import new_id
from aftersales_shared.pagination import Page, next_cursor
from aftersales_shared.problems import Problem, conflict
from aftersales_shared.web import IdempotencyKey
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from ..models import WebhookDelivery, WebhookSubscription
from ..webhooks import destinations, signing, store
from ..webhooks.catalog import subscribable_types
from ..webhooks.schemas import (
    DeliveryPublic,
    SecretRotated,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from .deps import ContextDep, IfMatchDep

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
OLD_SECRET_ACCEPTED = timedelta(hours=24)
WHO = (Role.storefront, Role.ops)
DeliveryStatus = Literal["pending", "delivered", "failed"]


async def _check_destination(request: Request, url: str) -> None:
    try:
        await destinations.check_destination(url, request.app.state.settings.webhook_private_allowed)
    except destinations.DestinationRefused as exc:
        raise Problem(
            422,
            "webhook_destination_refused",
            "Webhook destination refused",
            str(exc),
            message_zh="该回调地址不可用：请使用可从公网访问的 http(s) 地址"
            "（不接受内网、本机或链路本地地址）。",
            message_en="This callback URL cannot be used: give a publicly reachable http(s) address "
            "(internal, loopback and link-local addresses are not accepted).",
        ) from None


def _shop_for(principal: Principal, shop_id: str | None) -> str:
    if shop_id is None:
        if principal.shops is None or len(principal.shops) != 1:
            raise Problem(
                422,
                "validation_failed",
                "Invalid request",
                "shop_id is required for a key of several shops",
                errors=[{"field": "body.shop_id", "message": "required for a key of several shops"}],
            )
        (shop_id,) = principal.shops
    principal.require_shop(shop_id)
    return shop_id


@router.get("/event-types", response_model=list[str], summary="The event types a webhook may receive")
async def event_types(ctx: ContextDep) -> list[str]:
    ctx.principal.require(*WHO)
    return sorted(subscribable_types())


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe an endpoint to a shop's events 订阅回调",
    responses={422: {"description": "invalid, or a destination refused (SSRF)"}},
)
async def create(
    body: WebhookCreate, ctx: ContextDep, request: Request, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Returns the signing `secret` once. Deliveries carry `webhook-id`, `webhook-timestamp` and
    `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the secret's
    base64-decoded bytes after `whsec_`); the body is the CloudEvent."""
    ctx.principal.require(*WHO)
    shop_id = _shop_for(ctx.principal, body.shop_id)
    await _check_destination(request, body.url)

    async def produce() -> tuple[int, Any]:
        subscription = WebhookSubscription(
            id=new_id("whk"),
            shop_id=shop_id,
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            secret=signing.new_secret(),
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        ctx.session.add(subscription)
        await ctx.session.flush()
        created = WebhookCreated(**subscription.model_dump())
        return 201, created.model_dump(mode="json")

    return await idempotent(
        ctx.session,
        ctx.principal,
        idempotency_key,
        request_hash("POST", "/v1/webhooks", body.model_dump(mode="json")),
        ctx.now,
        produce,
    )


@router.get("", response_model=Page[WebhookPublic], summary="List the webhooks of the key's shops")
async def list_webhooks(
    ctx: ContextDep, cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict[str, Any]:
    ctx.principal.require(*WHO)
    rows = await store.subscriptions(ctx.session, ctx.principal, cursor, limit)
    return {
        "items": [WebhookPublic(**s.model_dump()) for s in rows[:limit]],
        "next_cursor": next_cursor(rows, limit),
    }


@router.get("/{webhook_id}", response_model=WebhookPublic, summary="Read a webhook")
async def get_webhook(webhook_id: ResourceIdPath, ctx: ContextDep) -> WebhookPublic:
    ctx.principal.require(*WHO)
    return WebhookPublic(
        **(await store.get_subscription(ctx.session, ctx.principal, webhook_id)).model_dump()
    )


@router.patch("/{webhook_id}", response_model=WebhookPublic, summary="Change a webhook, pause or resume it")
async def update(
    webhook_id: ResourceIdPath, body: WebhookUpdate, ctx: ContextDep, request: Request, if_match: IfMatchDep
) -> WebhookPublic:
    ctx.principal.require(*WHO)
    subscription = await store.get_subscription(ctx.session, ctx.principal, webhook_id, for_update=True)
    expected = body.expected_version if body.expected_version is not None else if_match
    if expected is not None and expected != subscription.version:
        raise conflict("version_conflict", f"the webhook is at version {subscription.version}")
    if body.url is not None:
        await _check_destination(request, body.url)
        subscription.url = body.url
    if body.event_types is not None:
        subscription.event_types = body.event_types
    if "description" in body.model_fields_set:
        subscription.description = body.description
    if body.enabled is True:
        subscription.status, subscription.disabled_at, subscription.disabled_reason = "active", None, None
        subscription.failing_since = None
    elif body.enabled is False and subscription.status == "active":
        subscription.status, subscription.disabled_at = "disabled", ctx.now
        subscription.disabled_reason = f"disabled by {ctx.principal.name}"
    subscription.version += 1
    subscription.updated_at = ctx.now
    result = WebhookPublic(**subscription.model_dump())
    await ctx.session.commit()
    return result


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook and its delivery log")
async def delete(webhook_id: ResourceIdPath, ctx: ContextDep) -> Response:
    ctx.principal.require(*WHO)
    subscription = await store.get_subscription(ctx.session, ctx.principal, webhook_id, for_update=True)
    await ctx.session.delete(subscription)  # its deliveries go with it (ON DELETE CASCADE)
    await ctx.session.commit()
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=SecretRotated,
    summary="A new signing secret; the old one still signs for 24 hours",
)
async def rotate_secret(webhook_id: ResourceIdPath, ctx: ContextDep) -> SecretRotated:
    """Until `previous_secret_expires_at`, every delivery carries two signatures (space-separated in
    `webhook-signature`), one per secret, so a receiver verifies with either while it switches."""
    ctx.principal.require(*WHO)
    subscription = await store.get_subscription(ctx.session, ctx.principal, webhook_id, for_update=True)
    subscription.previous_secret, subscription.secret = subscription.secret, signing.new_secret()
    subscription.previous_secret_expires_at = ctx.now + OLD_SECRET_ACCEPTED
    subscription.version += 1
    subscription.updated_at = ctx.now
    result = SecretRotated(
        id=subscription.id,
        secret=subscription.secret,
        previous_secret_expires_at=subscription.previous_secret_expires_at,
    )
    await ctx.session.commit()
    return result


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryPublic],
    summary="The delivery log: status, attempts, last response, next try (newest first)",
)
async def list_deliveries(
    webhook_id: ResourceIdPath,
    ctx: ContextDep,
    status: DeliveryStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    ctx.principal.require(*WHO)
    await store.get_subscription(ctx.session, ctx.principal, webhook_id)
    rows = await store.deliveries(ctx.session, webhook_id, status, cursor, limit)
    return {"items": [_delivery(d) for d in rows[:limit]], "next_cursor": next_cursor(rows, limit)}


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryPublic,
    summary="Send a delivery again now (same webhook-id), whatever its status",
)
async def redeliver(
    webhook_id: ResourceIdPath, delivery_id: ResourceIdPath, ctx: ContextDep
) -> DeliveryPublic:
    """A new series of attempts with the retry schedule from the start; an endpoint that is disabled gets
    it once resumed (PATCH `enabled: true`)."""
    ctx.principal.require(*WHO)
    await store.get_subscription(ctx.session, ctx.principal, webhook_id)
    delivery = await store.get_delivery(ctx.session, webhook_id, delivery_id, for_update=True)
    delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, ctx.now
    result = _delivery(delivery)
    await ctx.session.commit()
    return result


def _delivery(delivery: WebhookDelivery) -> DeliveryPublic:
    return DeliveryPublic(**delivery.model_dump(exclude={"payload"}))
