"""case-api's consumer group: the events of the other services, each handled in one place."""

from __future__ import annotations

from aftersales_shared import topics
from aftersales_shared.consumer import ConsumerRunner
from fastapi import FastAPI

from .reactions import logistics, payouts

GROUP = "case-api"
HANDLERS = {**logistics.HANDLERS, **payouts.HANDLERS}


def consumers(app: FastAPI) -> list[ConsumerRunner]:
    return [
        ConsumerRunner(
            bus=app.state.bus,
            sessions=app.state.sessions,
            clock=app.state.clock,
            group=GROUP,
            topics=[topics.ALERTS, topics.PARCELS, topics.PAYOUT_RESULTS],
            handlers=HANDLERS,
        )
    ]
