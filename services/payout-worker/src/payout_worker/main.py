"""payout-worker: cashback payouts, batched and paid exactly once before the workday cut-off."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aftersales_shared import topics
from aftersales_shared.app import build_app
from aftersales_shared.bus import Bus
from aftersales_shared.calendar import watch_coverage
from aftersales_shared.clock import Clock, SystemClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.ids import new_id
from aftersales_shared.metrics import CountBy
from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .api import payouts, registers
from .config import Settings
from .engine import PayoutEngine
from .handlers import ResultQueue, make_handlers
from .limits import HoldReason, Limits
from .models import Payout, PayoutStatus
from .providers import PaymentProvider, make_provider

DESCRIPTION = """Approved cashback 返现 becomes one payout per cashback task, batched (at most 1,000
transfers) and paid through the payment provider before the working day's cut-off (17:30 Asia/Shanghai
by default), exactly once (R-CASHBACK, R-CASHBACK-ONCE). Results go out on `payouts.results.v1`.

Payout states: `pending → batched → submitted → paid | failed | unknown` (`unknown`: an ambiguous answer,
queried and retried with the identical request), or `cancelled` before submission. A payout that would pass a
risk limit (per transfer, per payee per day, per shop per day) is `held_for_review` (with `hold_reason`) and
is never paid until ops releases it (`POST /v1/payouts/{id}/release`) or cancels it (`…/cancel`).
Authenticate with `Authorization: Bearer <api key>` (roles ops, support). Money is a decimal string.
"""

PAYOUTS_BY_STATUS = CountBy(
    Gauge("aftersales_payouts_by_status", "payouts in the ledger by status", ["status"]),
    Payout.status,
    list(PayoutStatus),
)


@dataclass(frozen=True)
class SumBy(CountBy):
    """Like CountBy, the sum of `amount` per value of `column` (0 for a value no row has)."""

    amount: Any = None

    async def refresh(self, session: AsyncSession) -> None:
        query = select(self.column, func.sum(self.amount)).where(*self.where).group_by(self.column)
        found = {str(value): float(total or 0) for value, total in (await session.exec(query)).all()}
        self.gauge.clear()
        for value, total in {**dict.fromkeys(self.values, 0.0), **found}.items():
            self.gauge.labels(value).set(total)


HELD_AMOUNT = SumBy(
    Gauge("aftersales_payouts_held_amount", "yuan held for review, by the limit that held it", ["reason"]),
    Payout.hold_reason,
    list(HoldReason),
    (col(Payout.status) == PayoutStatus.held_for_review,),
    amount=Payout.amount,
)


def new_payout_id() -> str:
    return new_id("po")


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    background: bool = True,
    provider: PaymentProvider | None = None,
) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()
    calendar = settings.business_calendar()
    watch_coverage(calendar, clock, settings.service_name)
    results = ResultQueue(settings.result_signer(), clock)
    handlers, batch_handlers = make_handlers(
        clock,
        calendar,
        settings.cutoff,
        new_payout_id,
        Limits.of(settings),
        settings.approval_verifier(),
        results,
    )

    def consumers(app: FastAPI) -> list[ConsumerRunner]:
        # The engine needs the app's sessions, which exist from here on (with or without background jobs).
        app.state.engine = PayoutEngine(
            app.state.sessions, provider or make_provider(settings, clock), clock, calendar, settings, results
        )
        return [
            ConsumerRunner(
                bus=app.state.bus,
                sessions=app.state.sessions,
                clock=clock,
                group=settings.consumer_group,
                topics=[topics.CASHBACK],
                handlers=handlers,
                batch_handlers=batch_handlers,
                fetch_max=1000,
            )
        ]

    def jobs(app: FastAPI) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [app.state.engine.run]

    return build_app(
        settings,
        title="payout-worker",
        description=DESCRIPTION,
        clock=clock,
        bus=bus,
        background=background,
        consumers=consumers,
        jobs=jobs,
        routers=[payouts.router, registers.router],
        state={"calendar": calendar},
        gauges=[PAYOUTS_BY_STATUS, HELD_AMOUNT],
    )
