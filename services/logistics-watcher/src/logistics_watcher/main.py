"""logistics-watcher: parcel tracking: stalled, lost and false-delivery detection."""

from __future__ import annotations

from aftersales_shared.app import build_app
from aftersales_shared.bus import Bus
from aftersales_shared.clock import Clock
from fastapi import FastAPI

from . import api, detectors, kuaidi100_push
from .config import Settings
from .consumers import consumers, jobs

DESCRIPTION = """Parcel tracking for after-sales: one state per tracking number, from warehouse and carrier
scans (`POST /v1/tracking-events` or `logistics.tracking.v1`), and detectors that flag parcels with no first
scan, stalled or suspected lost tracking, and suspicious sign-offs (POLICY.md R-NO-UPDATE, R-LOST,
R-FALSE-DELIVERY). Findings go out on `logistics.alerts.v1`; delivered, intercepted and returned parcels on
`logistics.parcels.v1`.

Authenticate with `Authorization: Bearer <api key>`; errors are `application/problem+json`. Carrier codes can
be sent raw (`carrier_format: kuaidi100`, `carrier_status`); they are mapped to the normalised statuses.
"""


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    background: bool = True,
) -> FastAPI:
    return build_app(
        settings or Settings(),
        title="logistics-watcher",
        description=DESCRIPTION,
        clock=clock,
        bus=bus,
        background=background,
        routers=[api.router, kuaidi100_push.router],
        consumers=consumers,
        jobs=jobs,
        gauges=[detectors.OPEN_ALERTS],
    )
