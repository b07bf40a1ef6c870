"""The webhook endpoints' bodies."""

from __future__ import annotations

from datetime import datetime

from aftersales_shared.fields import ID_MAX_LENGTH, ID_PATTERN, NulFree
from pydantic import BaseModel, Field, field_validator

from .catalog import subscribable_types

EventTypes = list[str]


def _known(types: list[str] | None) -> list[str] | None:
    if types is None:
        return None
    unknown = sorted(set(types) - subscribable_types())
    if unknown:
        raise ValueError(
            f"not a subscribable event type: {', '.join(unknown)} (GET /v1/webhooks/event-types)"
        )
    return sorted(set(types))


class WebhookCreate(NulFree):
    url: str = Field(min_length=1, max_length=2000, examples=["https://shop.example/hooks/aftersales"])
    event_types: EventTypes = Field(
        default_factory=list,
        max_length=100,
        description="the CloudEvent types to receive; empty or omitted: all",
        examples=[["aftersales.case.approved.v1", "payouts.payout.paid.v1"]],
    )
    description: str | None = Field(None, max_length=500)
    shop_id: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="the shop whose events it receives; may be left out by a key of exactly one shop",
    )

    _check_types = field_validator("event_types")(_known)


class WebhookUpdate(NulFree):
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: EventTypes | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(
        None, description="false: stop deliveries; true: resume a disabled endpoint (its failures forgotten)"
    )
    expected_version: int | None = None

    _check_types = field_validator("event_types")(_known)


class WebhookPublic(BaseModel):
    id: str
    shop_id: str
    url: str
    description: str | None
    event_types: list[str]
    status: str = Field(description="active, or disabled (by its owner, or after failing for a day)")
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="`whsec_` + base64: shown once; verify every delivery with it")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="the new signing secret, shown once")
    previous_secret_expires_at: datetime = Field(description="the old secret still signs until then")


class DeliveryPublic(BaseModel):
    id: str = Field(description="the `webhook-id` of every attempt")
    subscription_id: str
    event_id: str
    event_type: str
    status: str = Field(description="pending, delivered, or failed (given up)")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
