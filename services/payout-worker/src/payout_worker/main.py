"""payout-worker: cashback payouts, batched and paid exactly once before the workday cut-off."""

from __future__ import annotations

from aftersales_shared.app import build_app
from aftersales_shared.bus import Bus
from aftersales_shared.clock import Clock
from fastapi import FastAPI

from . import models  # noqa: F401  (registers the tables)
from .config import Settings


def create_app(settings: Settings | None = None, *, clock: Clock | None = None, bus: Bus | None = None,
               background: bool = True) -> FastAPI:
    return build_app(settings or Settings(), title="payout-worker", description="Cashback payouts, batched and paid exactly once before the workday cut-off.", clock=clock, bus=bus,
                     background=background, routers=[])
