"""Sends due deliveries. A claim moves a delivery's next attempt one lease ahead in a committed transaction
(rows claimed with SKIP LOCKED, so replicas never take the same ones); the send follows, then its result is
recorded. A sender that dies after its claim leaves the delivery due again when the lease ends, and it goes
out again with the same `webhook-id`: at least once, and a receiver dedupes by that id."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from aftersales_shared.background import BackgroundLoop
from aftersales_shared.clock import Clock, as_utc
from aftersales_shared.db import unit_of_work
from prometheus_client import Counter
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..models import WebhookDelivery, WebhookSubscription
from . import destinations, schedule, signing

log = logging.getLogger(__name__)
ATTEMPTS = Counter(
    "aftersales_webhook_attempts_total",
    "webhook delivery attempts by outcome (delivered, retrying, given_up)",
    ["outcome"],
)
DISABLED = Counter("aftersales_webhook_subscriptions_disabled_total", "endpoints disabled for failing")
DISABLE_AFTER = timedelta(hours=24)  # an endpoint failing this long with a delivery given up is disabled
PURGE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Claimed:
    delivery_id: str  # the webhook-id
    subscription_id: str
    attempts: int  # as claimed: the record of its result applies only if nobody recorded one since
    payload: bytes
    url: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and schedule.succeeded(self.status_code)


def secrets_in_use(subscription: WebhookSubscription, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while it is still accepted after a rotation."""
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < as_utc(expires):
        return subscription.secret, subscription.previous_secret
    return (subscription.secret,)


class Dispatcher(BackgroundLoop):
    task_name = "webhook-dispatcher"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        allow_private: bool,
        timeout: float,
        poll_interval: float = 1.0,
        batch_size: int = 50,
        retention: timedelta = timedelta(days=14),
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._http = destinations.client(allow_private, timeout)
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retention = retention
        self._purged_at: datetime | None = None

    async def claim(self) -> list[Claimed]:
        """Take up to a batch of due deliveries of active endpoints for one lease."""
        now = self._clock.now()
        async with unit_of_work(self._sessions) as session:
            due = (
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == "pending",
                    col(WebhookDelivery.next_attempt_at) <= now,
                    col(WebhookDelivery.subscription_id).in_(
                        select(WebhookSubscription.id).where(WebhookSubscription.status == "active")
                    ),
                )
                .order_by(col(WebhookDelivery.next_attempt_at))
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = (
                await session.exec(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.id).in_(due))
                    .values(next_attempt_at=now + schedule.CLAIM_LEASE)
                    .returning(
                        col(WebhookDelivery.id),
                        col(WebhookDelivery.subscription_id),
                        col(WebhookDelivery.attempts),
                        col(WebhookDelivery.payload),
                    )
                )
            ).all()
            if not rows:
                return []
            subscriptions = {
                s.id: s
                for s in (
                    await session.exec(
                        select(WebhookSubscription).where(
                            col(WebhookSubscription.id).in_({r[1] for r in rows})
                        )
                    )
                ).all()
            }
            return [
                Claimed(d, s, attempts, payload, subscriptions[s].url, secrets_in_use(subscriptions[s], now))
                for d, s, attempts, payload in rows
            ]

    async def send(self, claimed: Claimed) -> Outcome:
        timestamp = int(self._clock.now().timestamp())
        headers = signing.headers(claimed.secrets, claimed.delivery_id, timestamp, claimed.payload)
        try:
            response = await self._http.post(claimed.url, content=claimed.payload, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(response.status_code, None if response.is_success else f"HTTP {response.status_code}")

    async def record(self, claimed: Claimed, outcome: Outcome) -> None:
        now = self._clock.now()
        async with unit_of_work(self._sessions) as session:
            delivery = (
                await session.exec(
                    select(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == claimed.delivery_id,
                        WebhookDelivery.attempts == claimed.attempts,
                    )
                    .with_for_update()
                )
            ).first()
            subscription = await session.get(
                WebhookSubscription, claimed.subscription_id, with_for_update=True
            )
            if delivery is None or subscription is None:
                return  # another sender recorded this attempt after our lease ran out, or it was deleted
            delivery.attempts += 1
            delivery.last_attempt_at, delivery.last_status_code = now, outcome.status_code
            delivery.last_error = outcome.error
            if outcome.delivered:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
                subscription.failing_since = None
                ATTEMPTS.labels("delivered").inc()
                return
            subscription.failing_since = subscription.failing_since or now
            delay = schedule.retry_delay(delivery.attempts)
            if delay is not None and outcome.status_code != 410:  # 410 Gone: the receiver wants no more
                delivery.next_attempt_at = now + delay
                ATTEMPTS.labels("retrying").inc()
                return
            delivery.status, delivery.next_attempt_at = "failed", None
            ATTEMPTS.labels("given_up").inc()
            if outcome.status_code == 410:
                self._disable(subscription, now, "the endpoint answered 410 Gone")
            elif as_utc(subscription.failing_since) <= now - DISABLE_AFTER:
                self._disable(subscription, now, f"no successful delivery since {subscription.failing_since}")

    @staticmethod
    def _disable(subscription: WebhookSubscription, now: datetime, reason: str) -> None:
        subscription.status, subscription.disabled_at, subscription.disabled_reason = "disabled", now, reason
        subscription.version += 1
        subscription.updated_at = now
        DISABLED.inc()
        log.warning("webhook endpoint %s disabled: %s", subscription.id, reason)

    async def dispatch_once(self) -> int:
        """Claim, send and record one batch; how many were sent."""
        claimed = await self.claim()
        outcomes = await asyncio.gather(*(self.send(c) for c in claimed))
        for c, outcome in zip(claimed, outcomes, strict=True):
            await self.record(c, outcome)
        return len(claimed)

    async def purge(self) -> int:
        """Forget deliveries settled longer ago than the retention (the delivery log's horizon)."""
        cutoff = self._clock.now() - self._retention
        async with unit_of_work(self._sessions) as session:
            result = await session.exec(
                delete(WebhookDelivery).where(
                    col(WebhookDelivery.status) != "pending", col(WebhookDelivery.created_at) < cutoff
                )
            )
            return int(result.rowcount or 0)

    async def run(self) -> None:
        try:
            while True:
                try:
                    now = self._clock.now()
                    if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
                        self._purged_at = now
                        await self.purge()
                    sent = await self.dispatch_once()
                except Exception:
                    log.exception("webhook dispatch failed; retrying")
                    sent = 0
                if sent < self._batch_size:
                    await asyncio.sleep(self._poll_interval)
        finally:
            with contextlib.suppress(Exception):
                await self._http.aclose()
