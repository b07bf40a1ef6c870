"""Test support for payout-worker: a worker app driven by hand, approvals on the bus, a recording
fake provider, and the provider simulator as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import payout_worker
from aftersales_shared import topics
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.clock import Clock, FrozenClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.events import CashbackApproved, CashbackCancelled, CloudEvent, Payee, envelope
from aftersales_shared.ids import new_id
from aftersales_shared.migrations import upgrade
from aftersales_shared.signing import ApprovalSigner, private_text, public_text
from aftersales_testing import RunningService, free_port, fresh_postgres_database, make_keys, serve
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from payout_worker.config import Settings
from payout_worker.engine import PayoutEngine
from payout_worker.main import create_app
from payout_worker.models import Payout
from payout_worker.providers import Outcome, PaymentProvider, Transfer, TransferResult
from pydantic import ValidationError
from sqlmodel import col, select

SERVICE_DIR = Path(payout_worker.__file__).parent  # alembic.ini and migrations/
BIN = Path(sys.executable).parent
# Thursday 2026-11-05, a working day, 10:00 in Shanghai.
NOW = datetime.fromisoformat("2026-11-05T10:00:00+08:00")


# case-api's approval key, as the tests' approvals are signed with it and the worker trusts it.
SIGNER = ApprovalSigner(Ed25519PrivateKey.generate())
RESULT_KEY = Ed25519PrivateKey.generate()  # signs the results the workers of the tests publish
TRUSTED = {
    "approval_public_keys": public_text(SIGNER.key.public_key()),
    "result_signing_key": private_text(RESULT_KEY),
}

# Risk limits out of the way, for the tests about something else (test_limits.py sets its own).
NO_LIMITS = {
    "limit_per_transfer": Decimal("9999999999.99"),
    "limit_per_payee_day": Decimal("9999999999.99"),
    "limit_per_shop_day": Decimal("9999999999.99"),
}


# The shipped ceilings (500.00 per transfer, 1,000.00 per payee per day, 20,000.00 per shop per day).
DEFAULT_LIMITS = {name: Settings.model_fields[name].default for name in NO_LIMITS}


def at(text: str) -> datetime:
    """A Shanghai wall-clock time: at("2026-10-09 18:00")."""
    return datetime.fromisoformat(text.replace(" ", "T") + "+08:00")


def approved(
    task_id: str | None = None,
    *,
    amount: str = "12.00",
    when: datetime = NOW,
    shop_id: str = "shop-a",
    account: str = "zhangsan@example.com",
    case_id: str | None = None,
    order_id: str | None = None,
    signer: ApprovalSigner | None = SIGNER,
) -> CloudEvent:
    """An approval as case-api emits it: signed (with `signer`; None leaves it unsigned)."""
    data = CashbackApproved(
        cashback_task_id=task_id or new_id("cb"),
        order_id=order_id or f"o-{task_id or 'x'}",
        shop_id=shop_id,
        case_id=case_id,
        reason="shipping_fee",
        amount=Decimal(amount),
        payee=Payee(alipay_account=account, name="张三"),
        approved_at=when,
    )
    if signer is not None:
        data = signer.sign(data)
    return envelope(
        source="/case-api",
        type="aftersales.cashback.approved.v1",
        subject=data.cashback_task_id,
        data=data,
        at=when,
    )


def approved_as_sent(task_id: str, **data: Any) -> CloudEvent:
    """An approval whose data is what a sender put on the wire, whatever the shared model allows:
    approved(task_id)'s data with `data` changed (None removes a field), signed again by case-api's key
    where the shared model reads it (as case-api signs whatever it sends)."""
    event = approved(task_id)
    changed = {k: v for k, v in {**event.data, **data}.items() if v is not None}
    with contextlib.suppress(ValidationError):
        changed = SIGNER.sign(CashbackApproved.model_validate(changed)).model_dump(mode="json")
    return event.model_copy(update={"data": changed})


def cancelled(task_id: str, *, signer: ApprovalSigner | None = SIGNER) -> CloudEvent:
    """A cancellation as case-api emits it, signed with its approval key (`signer`; None: unsigned)."""
    data = CashbackCancelled(
        cashback_task_id=task_id, order_id=f"o-{task_id}", shop_id="shop-a", reason="withdrawn by support"
    )
    if signer is not None:
        data = signer.sign(data)
    return envelope(
        source="/case-api", type="aftersales.cashback.cancelled.v1", subject=task_id, data=data, at=NOW
    )


async def publish(bus: Bus, events: Sequence[CloudEvent]) -> None:
    from aftersales_shared.bus import OutRecord

    await bus.publish_batch([OutRecord(topics.CASHBACK, e.subject, e.to_bytes()) for e in events])


class FakeProvider:
    """Pays everything (or what `refuse` names) at once, records every call; `paid_at` from the clock."""

    name = "fake"
    max_batch = 1000
    fan_out = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[list[Transfer]] = []
        self.queries: list[list[str]] = []
        self.executed: dict[str, Transfer] = {}
        self.refuse: dict[str, str] = {}  # payee account → failure code
        self.delay = 0.0

    async def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        self.calls.append(list(transfers))
        await asyncio.sleep(self.delay)
        out = []
        for t in transfers:
            if code := self.refuse.get(t.payee_account):
                out.append(TransferResult(t.out_biz_no, Outcome.failed, code=code))
                continue
            self.executed.setdefault(t.out_biz_no, t)
            out.append(
                TransferResult(t.out_biz_no, Outcome.paid, f"fake-{t.out_biz_no}", paid_at=self.clock.now())
            )
        return out

    async def query(self, out_biz_nos: Sequence[str]) -> list[TransferResult]:
        self.queries.append(list(out_biz_nos))
        return [
            TransferResult(n, Outcome.paid, f"fake-{n}", paid_at=self.clock.now())
            if n in self.executed
            else TransferResult(n, Outcome.not_found)
            for n in out_biz_nos
        ]

    async def aclose(self) -> None:
        return None


@dataclass
class Worker(RunningService):
    """A payout-worker app with its lifespan running, background jobs off: tests drive it."""

    provider: PaymentProvider
    runner: ConsumerRunner
    _consumer: Any = field(default=None)

    @property
    def engine(self) -> PayoutEngine:
        return self.app.state.engine

    async def deliver(self, *events: CloudEvent) -> None:
        """Publish on aftersales.cashback.v1 and consume everything waiting, as the consumer would."""
        await publish(self.bus, events)
        await self.consume()

    async def consume(self) -> None:
        if self._consumer is None:
            self._consumer = await self.bus.consumer(self.runner.group, [topics.CASHBACK])
        while records := await self._consumer.fetch(max_records=1000, timeout_ms=50):
            await self.runner.handle_chunk(records)
            await self._consumer.commit({(r.topic, r.partition): r.offset + 1 for r in records})

    async def parked(self) -> dict[str, str]:
        """The events parked on the cashback DLQ: id → the error they were parked with."""
        dlq = await self.bus.consumer(f"inspect-{uuid.uuid4().hex[:8]}", [topics.dlq(topics.CASHBACK)])
        return {
            CloudEvent.from_bytes(r.value).id: dict(r.headers)["error"].decode()
            for r in await dlq.fetch(max_records=1000, timeout_ms=100)
        }

    async def tick(self, when: datetime | None = None) -> None:
        if when is not None:
            self.clock.set(when)
        await self.engine.tick()

    async def payouts(self) -> list[Payout]:
        async with self.app.state.sessions() as session:
            return list((await session.exec(select(Payout).order_by(col(Payout.id)))).all())

    async def payout(self, task_id: str) -> Payout:
        (payout,) = [p for p in await self.payouts() if p.cashback_task_id == task_id]
        return payout

    async def statuses(self) -> dict[str, str]:
        return {p.cashback_task_id: p.status for p in await self.payouts()}

    async def results(self) -> list[CloudEvent]:
        """Events queued on payouts.results.v1 (the outbox)."""
        from aftersales_shared.outbox import OutboxMessage

        async with self.app.state.sessions() as session:
            rows = (
                await session.exec(
                    select(OutboxMessage)
                    .where(OutboxMessage.topic == topics.PAYOUT_RESULTS)
                    .order_by(col(OutboxMessage.id))
                )
            ).all()
        return [CloudEvent.from_bytes(r.payload) for r in rows]


async def running_worker(
    tmp_path: Path,
    adapter: PaymentProvider | None = None,
    *,
    clock: FrozenClock | None = None,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    settings = Settings(data_dir=tmp_path, **{**NO_LIMITS, **TRUSTED, **overrides})
    await upgrade(SERVICE_DIR, settings.sqlalchemy_url)
    clock = clock or FrozenClock(NOW)
    if adapter is None and "provider" not in overrides:  # the settings' provider: make_provider builds it
        adapter = FakeProvider(clock)
    bus = EmbeddedBus(tmp_path / "events.db")
    app = create_app(settings, clock=clock, bus=bus, background=False, provider=adapter)
    async with serve(app) as client:
        worker = Worker(
            app,
            client,
            await make_keys(app, clock.now()),
            clock,
            bus,
            app.state.engine.provider,
            app.state.consumers[0],
        )
        yield worker
    await worker.provider.aclose()


async def any_db_worker(
    db: str, tmp_path: Path, adapter: PaymentProvider | None = None, **overrides: Any
) -> AsyncIterator[Worker]:
    """running_worker on SQLite ("sqlite") or on a fresh PostgreSQL database ("postgres")."""
    if db == "sqlite":
        async for worker in running_worker(tmp_path, adapter, **overrides):
            yield worker
        return
    async with fresh_postgres_database("payout_worker_t") as url:
        name = url.rsplit("/", 1)[1]
        async for worker in running_worker(
            tmp_path, adapter, database_url=url, database_name=name, **overrides
        ):
            yield worker


# ---------------------------------------------------------------- the simulator as a process


@dataclass
class Simulator:
    url: str
    process: subprocess.Popen[bytes]

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def behave(self, **behaviour: Any) -> None:
        with self.admin() as client:
            client.put("/admin/behaviour", json=behaviour).raise_for_status()

    def reset(self) -> None:
        with self.admin() as client:
            client.post("/admin/reset").raise_for_status()

    def transfers(self) -> list[dict[str, Any]]:
        with self.admin() as client:
            return list(client.get("/admin/transfers").json()["transfers"])

    def stats(self) -> dict[str, int]:
        with self.admin() as client:
            return dict(client.get("/admin/stats").json())


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


def start_simulator(db: Path, port: int | None = None) -> Iterator[Simulator]:
    port = port or free_port()
    process = subprocess.Popen(
        [str(BIN / "payout-simulator"), "--port", str(port), "--db", str(db)], env={**os.environ}
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Simulator(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # a request told to hang keeps a graceful shutdown waiting
            process.kill()
            process.wait(5)


def assert_paid_once(simulator: Simulator, payouts: Sequence[Payout]) -> None:
    """The simulator's record and the ledger agree: each task executed once, under its payout's key."""
    executed = [t for t in simulator.transfers() if t["status"] == "SUCCESS"]
    by_task: dict[str, list[str]] = {}
    for t in executed:
        by_task.setdefault(t["remark"], []).append(t["out_biz_no"])
    assert all(len(keys) == 1 for keys in by_task.values()), "a cashback task was paid under two keys"
    assert simulator.stats()["conflicts"] == 0, "a retry was not the identical request"
    paid = {p.cashback_task_id: p.out_biz_no for p in payouts if p.status == "paid"}
    assert {task: keys[0] for task, keys in by_task.items()} == paid
