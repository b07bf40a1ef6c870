"""case-api: orders, cases and the policy engine, evidence, cashback tasks and registers."""

from __future__ import annotations

from aftersales_shared.app import build_app
from aftersales_shared.bus import Bus
from aftersales_shared.calendar import watch_coverage
from aftersales_shared.clock import Clock, SystemClock
from aftersales_shared.metrics import CountBy
from fastapi import FastAPI
from prometheus_client import Gauge
from sqlmodel import col

from .api import cases, cashback, claims, errors, evidence, messages, orders, registers, webhooks
from .config import Settings
from .consumers import consumers
from .domain.workflow import CaseStatus
from .jobs import jobs
from .models import Case, WebhookDelivery, WebhookSubscription

DESCRIPTION = """After-sales 售后 cases for storefronts, warehouses and the support team.

Authenticate with `Authorization: Bearer <api key>`. Errors are `application/problem+json`; a request refused
by the after-sales policy is a 422 with `code: policy_refused`, the `rule`, and courteous `message_zh` and
`message_en`. Money is a decimal string with two places. Send `Idempotency-Key` on creating POSTs and
`expected_version` (or `If-Match`) on actions.
"""

UPLOAD_FORM_ALLOWANCE = 64 * 1024  # multipart boundaries and part headers


def upload_limit(settings: Settings) -> int:
    """The body an evidence upload may have: one file in a multipart form, and room for the form around it."""
    return max(settings.evidence_max_bytes, settings.evidence_max_image_bytes) + UPLOAD_FORM_ALLOWANCE


CASES_BY_STATUS = CountBy(
    Gauge("aftersales_cases_by_status", "cases by status", ["status"]), Case.status, list(CaseStatus)
)
WEBHOOKS_BY_STATUS = CountBy(
    Gauge(
        "aftersales_webhook_subscriptions",
        "webhook endpoints by status (disabled: failing, or paused)",
        ["status"],
    ),
    WebhookSubscription.status,
    ["active", "disabled"],
)
WEBHOOK_BACKLOG = CountBy(
    Gauge(
        "aftersales_webhook_deliveries_pending",
        "webhook deliveries not yet delivered nor given up",
        ["status"],
    ),
    WebhookDelivery.status,
    ["pending"],
    [col(WebhookDelivery.status) == "pending"],
)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    background: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    errors.install()
    signer = settings.signer().load()  # now: a bad key (or data folder) stops the start, not an approval
    clock = clock or SystemClock()
    calendar = settings.business_calendar()
    watch_coverage(calendar, clock, settings.service_name)
    return build_app(
        settings,
        title="case-api",
        description=DESCRIPTION,
        clock=clock,
        bus=bus,
        background=background,
        consumers=consumers,
        jobs=jobs,
        routers=[
            orders.router,
            cases.router,
            evidence.router,
            cashback.router,
            registers.router,
            claims.router,
            messages.router,
            webhooks.router,
        ],
        state={
            "calendar": calendar,
            "approval_signer": signer,
            "result_verifier": settings.result_verifier(),
        },
        gauges=[CASES_BY_STATUS, WEBHOOKS_BY_STATUS, WEBHOOK_BACKLOG],
        body_limits={"/v1/evidence": upload_limit(settings)},
    )
