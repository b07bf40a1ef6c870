"""The payout state machine and its scheduler (ARCHITECTURE.md, Money):

    pending → batched → submitted → paid | failed | unknown

- Batches close at the working day's cut-off, when 1,000 payouts of the day are waiting, or on a flush.
- `submitted` is committed BEFORE the provider is called: a crash between the call and the record
  leaves the payout submitted, and it is queried once `recover_after` has passed.
- An ambiguous answer (timeout, 5xx, SYSTEM_ERROR) → `unknown` → query → if the provider never executed
  it, the identical request again (same out_biz_no, amount, payee). Never a new key (R-CASHBACK-ONCE).
- A definite failure (invalid account, over limit) → `failed` with the provider's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import Clock, as_utc
from aftersales_shared.db import unit_of_work, update_many
from aftersales_shared.events import PayoutResult
from aftersales_shared.ids import new_id
from prometheus_client import Counter as Metric
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from . import repository as repo
from .config import Settings
from .handlers import ResultQueue, result_of
from .models import FINAL, IN_FLIGHT, Payout, PayoutBatch, PayoutStatus
from .providers import Outcome, PaymentProvider, Transfer, TransferResult
from .schedule import backoff, open_window

log = logging.getLogger(__name__)
PAYOUTS = Metric("aftersales_payouts_total", "payout outcomes recorded", ["status"])
# What recording a provider's answer sets on a payout (`PayoutEngine._change`), beside updated_at.
CHANGED = (
    "status",
    "check_after",
    "provider_order_id",
    "provider_fund_order_id",
    "failure_code",
    "failure_message",
    "paid_at",
)


class PayoutEngine:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: PaymentProvider,
        clock: Clock,
        calendar: BusinessCalendar,
        settings: Settings,
        results: ResultQueue | None = None,
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.clock = clock
        self.calendar = calendar
        self.settings = settings
        self.batch_size = min(settings.batch_size, provider.max_batch)
        self.wake = asyncio.Event()
        self.results = results or ResultQueue(settings.result_signer(), clock)

    # ------------------------------------------------------------ batching

    async def close_batches(
        self,
        session: AsyncSession,
        *,
        trigger: str,
        due_by: datetime | None,
        minimum: int = 1,
        shops: Collection[str] | None = None,
    ) -> list[PayoutBatch]:
        """Move pending payouts due by `due_by` into batches of at most `batch_size`; a batch needs at
        least `minimum` payouts. Flushes; the caller commits."""
        now = self.clock.now()
        batches: list[PayoutBatch] = []
        while True:
            pending = await repo.claim_pending(session, due_by=due_by, shops=shops, limit=self.batch_size)
            if not pending or len(pending) < minimum:
                return batches
            batch = PayoutBatch(
                id=new_id("bat"),
                trigger=trigger,
                size=len(pending),
                created_at=now,
                due_at=max(as_utc(p.due_at) for p in pending),
            )
            session.add(batch)
            await repo.set_payouts(
                session,
                [p.id for p in pending],
                status=PayoutStatus.batched,
                batch_id=batch.id,
                updated_at=now,
            )
            batches.append(batch)
            if len(pending) < self.batch_size:
                return batches

    async def close_due_batches(self) -> list[PayoutBatch]:
        """What the scheduler closes: everything due by now (the cut-off has come), then full batches
        of the working day still collecting."""
        now = self.clock.now()
        async with unit_of_work(self.sessions) as session:
            batches = await self.close_batches(session, trigger="cutoff", due_by=now)
            if (window := open_window(now, self.calendar, self.settings.cutoff)) is not None:
                batches += await self.close_batches(
                    session, trigger="full", due_by=window, minimum=self.batch_size
                )
        return batches

    # ------------------------------------------------------------ sending and recording

    def transfer(self, payout: repo.Working) -> Transfer:
        """The request for a payout, from its ledger row alone: identical on every retry."""
        return Transfer(
            out_biz_no=payout.out_biz_no,
            amount=payout.amount,
            payee_account=payout.payee_account,
            payee_name=payout.payee_name,
            title=self.settings.alipay_order_title,
            remark=payout.cashback_task_id,
        )

    async def _mark_submitted(self, session: AsyncSession, payouts: Sequence[repo.Working]) -> list[Transfer]:
        now = self.clock.now()
        # The lease outlasts the call: a fan-out provider sends one transfer per call under the QPS limit.
        sending = len(payouts) / self.settings.provider_qps if self.provider.fan_out else 0.0
        lease = now + timedelta(seconds=self.settings.recover_after_seconds + sending)
        await repo.set_payouts(
            session,
            [p.id for p in payouts],
            status=PayoutStatus.submitted,
            submitted_at=now,
            check_after=lease,
            attempts=Payout.attempts + 1,
            updated_at=now,
        )
        return [self.transfer(p) for p in payouts]

    async def send_next_batch(self) -> bool:
        """Submit the oldest closed batch. False when none is waiting."""
        async with unit_of_work(self.sessions) as session:
            payouts = await repo.claim_batched(session, self.batch_size)
            if not payouts:
                return False
            transfers = await self._mark_submitted(session, payouts)
            batch = await session.get(PayoutBatch, payouts[0].batch_id)
            if batch is not None and batch.status == "closed":
                batch.status, batch.submitted_at = "submitted", self.clock.now()
                session.add(batch)
        # Committed: from here a crash leaves the payouts `submitted`, and recovery queries them.
        await self.record(await self.provider.transfer(transfers))
        return True

    async def record(self, results: Sequence[TransferResult]) -> list[str]:
        """Apply the provider's answers; return the payouts it never executed (to resend identically)."""
        now = self.clock.now()
        answers = {r.out_biz_no: r for r in results}
        resend: list[str] = []
        changes: list[dict[str, Any]] = []
        outcomes: list[PayoutResult] = []
        async with unit_of_work(self.sessions) as session:
            payouts = await repo.lock_working(session, list(answers))
            for payout in payouts:
                result = answers[payout.out_biz_no]
                if payout.status not in IN_FLIGHT:
                    continue  # recorded already (another replica's query, a late answer)
                if result.outcome is Outcome.not_found:
                    resend.append(payout.id)
                    continue
                changes.append(self._change(payout, result, now))
                if changes[-1]["status"] in FINAL:
                    outcomes.append(result_of({**payout._mapping, **changes[-1]}))
            await update_many(session, repo.table(Payout), changes, key="id", columns=CHANGED, updated_at=now)
            await self.results.add(session, outcomes)
            await repo.complete_batches(session, {p.batch_id for p in payouts if p.batch_id}, now)
        counts = Counter(change["status"] for change in changes)
        for status, count in counts.items():
            PAYOUTS.labels(status).inc(count)
        if counts[PayoutStatus.unknown] or counts[PayoutStatus.failed]:
            codes = Counter(c["failure_code"] for c in changes if c["status"] != PayoutStatus.paid)
            log.warning("provider answers: %s; failure codes %s", dict(counts), dict(codes))
        return resend

    def _change(self, payout: repo.Working, result: TransferResult, now: datetime) -> dict[str, Any]:
        """The id and the CHANGED columns of the payout an answer settles (the same columns for every
        answer: one bulk UPDATE per record)."""
        change: dict[str, Any] = {
            "id": payout.id,
            "status": PayoutStatus.failed,
            "check_after": None,
            "provider_order_id": result.provider_order_id or payout.provider_order_id,
            "provider_fund_order_id": result.provider_fund_order_id or payout.provider_fund_order_id,
            "failure_code": result.code or "FAILED",
            "failure_message": result.message,
            "paid_at": None,
        }
        if result.outcome is Outcome.unknown:  # the last ambiguous answer stays visible in failure_code
            unresolved_for = now - as_utc(payout.submitted_at)
            change["status"] = PayoutStatus.unknown
            change["check_after"] = now + backoff(
                unresolved_for, self.settings.retry_base_seconds, self.settings.max_backoff_seconds
            )
        elif result.outcome is Outcome.paid:
            change.update(
                status=PayoutStatus.paid,
                paid_at=as_utc(result.paid_at) if result.paid_at else now,
                failure_code=None,
                failure_message=None,
            )
        return change

    # ------------------------------------------------------------ recovery

    async def recover_next(self) -> bool:
        """Query submitted/unknown payouts whose check is due; resend those never executed. False when
        none is due."""
        now = self.clock.now()
        lease = now + timedelta(seconds=self.settings.recover_after_seconds)
        async with unit_of_work(self.sessions) as session:
            payouts = await repo.claim_in_flight(session, now, self.batch_size)
            # A lease: other replicas leave them alone while we ask.
            await repo.set_payouts(session, [p.id for p in payouts], check_after=lease)
        if not payouts:
            return False
        resend = await self.record(await self.provider.query([p.out_biz_no for p in payouts]))
        if resend:
            async with unit_of_work(self.sessions) as session:
                waiting = [p for p in await repo.lock_working(session, resend) if p.status in IN_FLIGHT]
                transfers = await self._mark_submitted(session, waiting)
            log.info("resending %d transfers the provider never executed", len(transfers))
            await self.record(await self.provider.transfer(transfers))
        return True

    # ------------------------------------------------------------ the scheduler job

    async def tick(self) -> None:
        await self.close_due_batches()
        await self._drain(self.send_next_batch)
        await self._drain(self.recover_next)

    async def _drain(self, step: Callable[[], Awaitable[bool]]) -> None:
        """Run `step` until it finds nothing, `concurrent_calls` at a time (each claims its own rows)."""

        async def loop() -> None:
            while await step():
                pass

        await asyncio.gather(*(loop() for _ in range(self.settings.concurrent_calls)))

    async def run(self) -> None:
        """The scheduler: every `tick_seconds`, or at once when woken (a flush)."""
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("payout tick failed; retrying")
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.settings.tick_seconds)
        finally:
            await self.provider.aclose()
