"""Payout risk limits (ARCHITECTURE.md, Money): a payout that would pass the ceiling per transfer, per payee
per day or per shop per day is held for review, never batched or paid until ops releases it; ops may cancel
it instead, which fails its task so that case-api releases the money. On SQLite and on PostgreSQL, and with
fifty approvals at once on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aftersales_shared import topics
from aftersales_shared.clock import FrozenClock
from payout_testing import (
    DEFAULT_LIMITS,
    NOW,
    FakeProvider,
    Simulator,
    Worker,
    any_db_worker,
    approved,
    assert_paid_once,
    at,
    cancelled,
    publish,
)
from payout_worker.config import Settings
from payout_worker.limits import DayTotals, HoldReason, Limits, day_bounds, limit_day
from payout_worker.providers.simulator import SimulatorProvider
from pydantic import ValidationError

DBS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LIMITS = Limits(Decimal("500.00"), Decimal("1000.00"), Decimal("20000.00"))


@pytest.fixture(params=DBS)
async def limited(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    """A worker with the shipped limits and the fake provider, on SQLite and on PostgreSQL."""
    async for w in any_db_worker(request.param, tmp_path, **DEFAULT_LIMITS):
        yield w


@pytest.fixture(params=DBS)
async def paying(
    request: pytest.FixtureRequest, tmp_path: Path, simulator: Simulator
) -> AsyncIterator[Worker]:
    """A worker with the shipped limits paying through the simulator process."""
    provider = SimulatorProvider(simulator.url, timeout=5, qps=100)
    async for w in any_db_worker(request.param, tmp_path, provider, clock=FrozenClock(NOW), **DEFAULT_LIMITS):
        yield w


def executed(simulator: Simulator) -> list[str]:
    """The cashback tasks the simulator paid."""
    return sorted(t["remark"] for t in simulator.transfers() if t["status"] == "SUCCESS")


async def held(w: Worker) -> dict[str, str | None]:
    return {p.cashback_task_id: p.hold_reason for p in await w.payouts() if p.status == "held_for_review"}


async def payout_id(w: Worker, task_id: str) -> str:
    return (await w.payout(task_id)).id


class TestSettings:
    def test_the_shipped_ceilings(self) -> None:
        shipped = Limits.of(Settings.model_construct())
        assert shipped == Limits(Decimal("500.00"), Decimal("1000.00"), Decimal("20000.00"))
        assert dict(DEFAULT_LIMITS) == {
            "limit_per_transfer": Decimal("500.00"),
            "limit_per_payee_day": Decimal("1000.00"),
            "limit_per_shop_day": Decimal("20000.00"),
        }

    def test_read_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYOUT_WORKER_LIMIT_PER_TRANSFER", "200")
        monkeypatch.setenv("PAYOUT_WORKER_LIMIT_PER_PAYEE_DAY", "300.50")
        monkeypatch.setenv("PAYOUT_WORKER_LIMIT_PER_SHOP_DAY", "5000")
        assert Limits.of(Settings()) == Limits(Decimal("200"), Decimal("300.50"), Decimal("5000"))

    @pytest.mark.parametrize("value", ["0", "-1", "1.001", "abc"])
    def test_nonsense_is_refused(self, value: str) -> None:
        with pytest.raises(ValidationError):
            Settings(limit_per_transfer=value)


class TestRules:
    """The pure check: the first ceiling passed, given what the payee and the shop take that day."""

    day = date(2026, 11, 5)

    def reason(self, totals: DayTotals, amount: str, payee: str = "p", shop: str = "s") -> HoldReason | None:
        return totals.hold_reason(LIMITS, amount=Decimal(amount), payee=payee, shop_id=shop, day=self.day)

    def test_reaching_a_ceiling_is_allowed_passing_it_is_not(self) -> None:
        totals = DayTotals()
        assert self.reason(totals, "500.00") is None
        assert self.reason(totals, "500.01") == HoldReason.per_transfer
        totals.take(amount=Decimal("600.00"), payee="p", shop_id="s", day=self.day)
        assert self.reason(totals, "400.00") is None
        assert self.reason(totals, "400.01") == HoldReason.per_payee_day
        assert self.reason(totals, "400.01", payee="q") is None

    def test_the_shop_ceiling(self) -> None:
        totals = DayTotals()
        totals.take(amount=Decimal("19900.00"), payee="p", shop_id="s", day=self.day)
        assert self.reason(totals, "100.00", payee="q") is None
        assert self.reason(totals, "100.01", payee="q") == HoldReason.per_shop_day
        assert self.reason(totals, "100.01", payee="q", shop="t") is None

    def test_the_first_ceiling_passed_is_named(self) -> None:
        totals = DayTotals()
        totals.take(amount=Decimal("19999.00"), payee="p", shop_id="s", day=self.day)
        assert self.reason(totals, "600.00") == HoldReason.per_transfer
        assert self.reason(totals, "400.00") == HoldReason.per_payee_day

    def test_other_days_do_not_count(self) -> None:
        totals = DayTotals()
        totals.take(amount=Decimal("1000.00"), payee="p", shop_id="s", day=date(2026, 11, 4))
        assert self.reason(totals, "500.00") is None

    def test_the_day_is_the_shanghai_day_of_approval(self) -> None:
        assert limit_day(at("2026-11-05 00:00")) == limit_day(at("2026-11-05 23:59")) == self.day
        assert limit_day(at("2026-11-04 23:59")) == date(2026, 11, 4)
        assert day_bounds(self.day) == (at("2026-11-05 00:00"), at("2026-11-06 00:00"))


class TestHeldOnApproval:
    async def test_a_transfer_over_the_ceiling_is_held(self, limited: Worker) -> None:
        await limited.deliver(
            approved("cb-big", amount="500.01"), approved("cb-max", amount="500.00", account="li@example.com")
        )
        assert await limited.statuses() == {"cb-big": "held_for_review", "cb-max": "pending"}
        assert await held(limited) == {"cb-big": "per_transfer"}
        assert await limited.results() == []  # nothing to tell case-api yet

    async def test_earlier_approvals_of_a_batch_count_toward_later_ones(self, limited: Worker) -> None:
        await limited.deliver(*(approved(f"cb-{i}", amount="400.00") for i in range(3)))
        assert await limited.statuses() == {"cb-0": "pending", "cb-1": "pending", "cb-2": "held_for_review"}
        await limited.deliver(approved("cb-3", amount="200.00"))  # a later batch: 800 + 200 reaches 1,000
        await limited.deliver(approved("cb-4", amount="0.10"))
        assert (await limited.payout("cb-3")).status == "pending"
        assert await held(limited) == {"cb-2": "per_payee_day", "cb-4": "per_payee_day"}

    async def test_a_payee_counts_across_shops(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-a", amount="500.00"))
        await limited.deliver(approved("cb-b", amount="500.01", shop_id="shop-b"))
        await limited.deliver(approved("cb-c", amount="500.00", shop_id="shop-b"))
        assert await limited.statuses() == {"cb-a": "pending", "cb-b": "held_for_review", "cb-c": "pending"}

    async def test_the_shop_ceiling(self, limited: Worker) -> None:
        await limited.deliver(
            *(approved(f"cb-{i:02}", amount="500.00", account=f"buyer{i}@example.com") for i in range(41))
        )
        assert await held(limited) == {"cb-40": "per_shop_day"}
        await limited.deliver(approved("cb-b", amount="500.00", shop_id="shop-b", account="b@example.com"))
        assert (await limited.payout("cb-b")).status == "pending"  # another shop's day

    async def test_the_day_is_the_shanghai_day_of_approval(self, limited: Worker) -> None:
        # 07:00 and 09:00 in Shanghai are on two UTC days, but one Shanghai day.
        await limited.deliver(approved("cb-early", amount="500.00", when=at("2026-11-05 07:00")))
        await limited.deliver(approved("cb-late", amount="500.00", when=at("2026-11-05 09:00")))
        await limited.deliver(approved("cb-more", amount="0.10", when=at("2026-11-05 23:59")))
        await limited.deliver(approved("cb-next", amount="500.00", when=at("2026-11-06 00:00")))
        assert await held(limited) == {"cb-more": "per_payee_day"}

    async def test_failed_cancelled_and_held_payouts_do_not_count(self, limited: Worker) -> None:
        limited.provider.refuse["zhangsan@example.com"] = "PAYEE_NOT_EXIST"
        await limited.deliver(approved("cb-failed", amount="500.00"))
        await limited.call("POST", "/v1/batches/flush", "ops")
        await limited.tick()
        del limited.provider.refuse["zhangsan@example.com"]
        await limited.deliver(approved("cb-cancelled", amount="500.00"))
        await limited.deliver(cancelled("cb-cancelled"))
        await limited.deliver(approved("cb-held", amount="900.00"))  # held per transfer: does not count
        await limited.deliver(approved("cb-ok", amount="500.00"), approved("cb-ok2", amount="500.00"))
        assert await limited.statuses() == {
            "cb-failed": "failed",
            "cb-cancelled": "cancelled",
            "cb-held": "held_for_review",
            "cb-ok": "pending",
            "cb-ok2": "pending",
        }

    async def test_a_released_payout_counts(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-held", amount="600.00"))
        await limited.call("POST", f"/v1/payouts/{await payout_id(limited, 'cb-held')}/release", "ops")
        await limited.deliver(approved("cb-next", amount="400.01"))
        assert await held(limited) == {"cb-next": "per_payee_day"}

    async def test_held_payouts_are_never_batched(self, limited: Worker) -> None:
        await limited.deliver(
            approved("cb-held", amount="600.00"), approved("cb-ok", account="li@example.com")
        )
        assert (await limited.call("POST", "/v1/batches/flush", "admin")).json()["payouts"] == 1
        await limited.tick(at("2026-11-05 17:30"))
        await limited.tick(at("2026-11-09 17:30"))
        assert [t.remark for call in limited.provider.calls for t in call] == ["cb-ok"]
        held_payout = await limited.payout("cb-held")
        assert (held_payout.status, held_payout.batch_id) == ("held_for_review", None)


class TestReview:
    async def test_hold_release_and_pay_through_the_simulator(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        await paying.deliver(
            approved("cb-held", amount="800.00"), approved("cb-ok", account="li@example.com")
        )
        await paying.tick(at("2026-11-05 17:30"))
        assert executed(simulator) == ["cb-ok"]  # the held one waits, past its cut-off
        paying.clock.set(at("2026-11-06 09:15"))
        response = await paying.call(
            "POST",
            f"/v1/payouts/{await payout_id(paying, 'cb-held')}/release",
            "ops",
            json={"note": "known buyer"},
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["hold_reason"], body["reviewed_by"], body["review_note"]) == (
            "pending",
            "per_transfer",
            "ops",  # the key's name
            "known buyer",
        )
        assert datetime.fromisoformat(body["reviewed_at"]) == at("2026-11-06 09:15")
        await paying.tick()  # overdue: the next batch takes it
        assert executed(simulator) == ["cb-held", "cb-ok"]
        payouts = await paying.payouts()
        assert {p.status for p in payouts} == {"paid"}
        assert_paid_once(simulator, payouts)
        assert {e.data["cashback_task_id"]: e.type for e in await paying.results()} == {
            "cb-ok": "payouts.payout.paid.v1",
            "cb-held": "payouts.payout.paid.v1",
        }

    async def test_released_before_the_cutoff_it_is_paid_at_the_cutoff(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        await paying.deliver(approved("cb-held", amount="800.00"))
        await paying.call("POST", f"/v1/payouts/{await payout_id(paying, 'cb-held')}/release", "ops")
        await paying.tick(at("2026-11-05 12:00"))
        assert executed(simulator) == []
        await paying.tick(at("2026-11-05 17:30"))
        assert executed(simulator) == ["cb-held"]

    async def test_cancelled_payouts_are_never_executed(self, paying: Worker, simulator: Simulator) -> None:
        await paying.deliver(
            approved("cb-ops-held", amount="800.00"),
            approved("cb-ops-pending", account="li@example.com"),
            approved("cb-task-held", amount="900.00", account="wang@example.com"),
            approved("cb-ok", account="zhao@example.com"),
        )
        for task in ("cb-ops-held", "cb-ops-pending"):
            response = await paying.call("POST", f"/v1/payouts/{await payout_id(paying, task)}/cancel", "ops")
            assert response.status_code == 200 and response.json()["failure_code"] == "CANCELLED_BY_OPS"
        await paying.deliver(cancelled("cb-task-held"))  # case-api withdrew the task: no result from here
        await paying.tick(at("2026-11-05 17:30"))
        await paying.call("POST", "/v1/batches/flush", "ops")
        await paying.tick(at("2026-11-06 17:30"))
        assert executed(simulator) == ["cb-ok"]
        assert await paying.statuses() == {
            "cb-ops-held": "cancelled",
            "cb-ops-pending": "cancelled",
            "cb-task-held": "cancelled",
            "cb-ok": "paid",
        }
        results = {e.data["cashback_task_id"]: e for e in await paying.results()}
        assert set(results) == {"cb-ops-held", "cb-ops-pending", "cb-ok"}
        for task in ("cb-ops-held", "cb-ops-pending"):
            assert results[task].type == "payouts.payout.failed.v1"
            assert (results[task].data["status"], results[task].data["failure_code"]) == (
                "failed",
                "CANCELLED_BY_OPS",
            )
        # The results reach case-api's topic, keyed by cashback task id.
        while await paying.app.state.relay.drain_once():
            pass
        consumer = await paying.bus.consumer("case-api-test", [topics.PAYOUT_RESULTS])
        keys = {r.key for r in await consumer.fetch(timeout_ms=100)}
        assert keys == {"cb-ops-held", "cb-ops-pending", "cb-ok"}

    async def test_the_cancel_records_who_and_why(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-1", amount="600.00"))
        limited.clock.set(at("2026-11-05 11:00"))
        body = (
            await limited.call(
                "POST",
                f"/v1/payouts/{await payout_id(limited, 'cb-1')}/cancel",
                "ops",
                json={"note": "fraud ring"},
            )
        ).json()
        assert (body["status"], body["reviewed_by"], body["review_note"], body["failure_message"]) == (
            "cancelled",
            "ops",
            "fraud ring",
            "fraud ring",
        )
        assert datetime.fromisoformat(body["reviewed_at"]) == at("2026-11-05 11:00")

    async def test_wrong_status_is_409(self, limited: Worker) -> None:
        await limited.deliver(
            approved("cb-held", amount="600.00"), approved("cb-paid", account="li@example.com")
        )
        held_id, paid_id = await payout_id(limited, "cb-held"), await payout_id(limited, "cb-paid")
        await limited.tick(at("2026-11-05 17:30"))
        refused = await limited.call("POST", f"/v1/payouts/{paid_id}/release", "ops")
        assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "payout_not_held"
        refused = await limited.call("POST", f"/v1/payouts/{paid_id}/cancel", "ops")
        assert refused.status_code == 409 and refused.json()["code"] == "payout_not_cancellable"
        assert (await limited.call("POST", f"/v1/payouts/{held_id}/cancel", "ops")).status_code == 200
        for action in ("release", "cancel"):
            assert (await limited.call("POST", f"/v1/payouts/{held_id}/{action}", "ops")).status_code == 409
        assert (await limited.payout("cb-paid")).status == "paid"
        assert (await limited.payout("cb-paid")).reviewed_by is None  # a refusal changes nothing

    async def test_a_pending_payout_is_not_released(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-1"))
        response = await limited.call(
            "POST", f"/v1/payouts/{await payout_id(limited, 'cb-1')}/release", "ops"
        )
        assert response.status_code == 409

    async def test_roles_and_shops(self, limited: Worker) -> None:
        await limited.deliver(
            approved("cb-a", amount="600.00"),
            approved("cb-b", amount="600.00", shop_id="shop-b", account="b@x.cn"),
        )
        a, b = await payout_id(limited, "cb-a"), await payout_id(limited, "cb-b")
        for action in ("release", "cancel"):
            assert (await limited.client.post(f"/v1/payouts/{a}/{action}")).status_code == 401
            for who in ("support", "storefront", "warehouse", "support_b"):
                refused = await limited.call("POST", f"/v1/payouts/{a}/{action}", who)
                assert refused.status_code == 403, (action, who)
            # Another shop's payout does not exist for this key; a missing one neither.
            assert (await limited.call("POST", f"/v1/payouts/{b}/{action}", "ops")).status_code == 404
            assert (await limited.call("POST", f"/v1/payouts/po_missing/{action}", "ops")).status_code == 404
        assert await held(limited) == {"cb-a": "per_transfer", "cb-b": "per_transfer"}
        assert (await limited.call("POST", f"/v1/payouts/{b}/release", "admin")).status_code == 200

    async def test_the_note_is_optional_and_bounded(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-1", amount="600.00"))
        path = f"/v1/payouts/{await payout_id(limited, 'cb-1')}/release"
        too_long = await limited.call("POST", path, "ops", json={"note": "x" * 501})
        assert too_long.status_code == 422
        assert (await limited.call("POST", path, "ops", json={"other": 1})).status_code == 422
        response = await limited.call("POST", path, "ops")
        assert response.status_code == 200 and response.json()["review_note"] is None

    async def test_an_idempotency_key_replays_the_first_answer(self, limited: Worker) -> None:
        await limited.deliver(approved("cb-1", amount="600.00"))
        path = f"/v1/payouts/{await payout_id(limited, 'cb-1')}/cancel"
        first = await limited.call("POST", path, "ops", headers={"Idempotency-Key": "k1"})
        again = await limited.call("POST", path, "ops", headers={"Idempotency-Key": "k1"})
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        assert len(await limited.results()) == 1  # one failed result


class TestVisibility:
    async def test_held_payouts_are_listed_with_their_reason(self, limited: Worker) -> None:
        await limited.deliver(
            approved("cb-held", amount="600.00"), approved("cb-ok", account="li@example.com")
        )
        items = (await limited.call("GET", "/v1/payouts?status=held_for_review", "support")).json()["items"]
        assert [(p["cashback_task_id"], p["hold_reason"]) for p in items] == [("cb-held", "per_transfer")]
        assert (await limited.call("GET", "/v1/payouts?status=nonsense", "ops")).status_code == 422

    async def test_metrics(self, limited: Worker) -> None:
        metrics = await limited.metrics()
        assert (
            metrics.value("aftersales_payouts_by_status", status="held_for_review") == 0
        )  # reported before any
        assert metrics.value("aftersales_payouts_held_amount", reason="per_transfer") == 0
        await limited.deliver(
            approved("cb-1", amount="600.00"),
            approved("cb-2", amount="700.50", account="li@example.com"),
            approved("cb-3", amount="500.00", account="wang@example.com"),
            approved("cb-4", amount="500.00", account="wang@example.com"),
        )
        metrics = await limited.metrics()
        assert metrics.value("aftersales_payouts_by_status", status="held_for_review") == 2
        assert metrics.value("aftersales_payouts_held_amount", reason="per_transfer") == 1300.50
        assert metrics.value("aftersales_payouts_held_amount", reason="per_payee_day") == 0
        await limited.deliver(approved("cb-5", amount="500.00", account="wang@example.com"))
        metrics = await limited.metrics()
        assert metrics.value("aftersales_payouts_held_amount", reason="per_payee_day") == 500
        assert metrics.value("aftersales_payouts_held_amount", reason="per_shop_day") == 0


@pytest.mark.postgres
class TestConcurrentApprovals:
    """Each approval in its own transaction, all at once, as consumers on several replicas would."""

    async def run(self, tmp_path: Path, shops: list[str]) -> None:
        async for w in any_db_worker("postgres", tmp_path, **DEFAULT_LIMITS):
            w.runner._backoff = 0
            events = [
                approved(f"cb-{i:02}", amount="100.00", shop_id=shops[i % len(shops)]) for i in range(50)
            ]
            await publish(w.bus, events)
            consumer = await w.bus.consumer(w.runner.group, [topics.CASHBACK])
            records = await consumer.fetch(max_records=100, timeout_ms=500)
            assert len(records) == 50
            await asyncio.gather(*(w.runner.handle_chunk([r]) for r in records))
            payouts = await w.payouts()
            assert len(payouts) == 50 and w.runner.dead_lettered == 0
            unheld = [p.amount for p in payouts if p.status == "pending"]
            assert sum(unheld) <= Decimal("1000.00")
            assert sum(unheld) == Decimal("1000.00")  # and nothing held that fitted
            assert {p.hold_reason for p in payouts if p.status == "held_for_review"} == {"per_payee_day"}

    async def test_fifty_approvals_for_one_payee(self, tmp_path: Path) -> None:
        await self.run(tmp_path, ["shop-a"])

    async def test_fifty_approvals_for_one_payee_from_three_shops(self, tmp_path: Path) -> None:
        await self.run(tmp_path, ["shop-a", "shop-b", "shop-c"])

    async def test_fifty_deliveries_of_one_approval_at_once_are_one_payout_paid_once(
        self, tmp_path: Path
    ) -> None:
        """The same task's approval under 50 event ids (a producer's retries, a replay), each handled in its
        own transaction at once: one ledger entry, sent once."""
        async for w in any_db_worker("postgres", tmp_path, **DEFAULT_LIMITS):
            w.runner._backoff = 0
            original = approved("cb-once", amount="100.00")
            copies = [original.model_copy(update={"id": f"evt-copy-{i}"}) for i in range(50)]
            await publish(w.bus, copies)
            consumer = await w.bus.consumer(w.runner.group, [topics.CASHBACK])
            records = await consumer.fetch(max_records=100, timeout_ms=500)
            assert len(records) == 50
            await asyncio.gather(*(w.runner.handle_chunk([r]) for r in records))
            [payout] = await w.payouts()
            assert (payout.cashback_task_id, payout.amount, payout.status) == (
                "cb-once",
                Decimal("100.00"),
                "pending",
            )
            assert w.runner.dead_lettered == 0
            w.clock.set(at("2026-11-05 17:30"))  # past the day's cut-off: due
            await w.engine.tick()
            await w.engine.tick()
            provider: FakeProvider = w.provider  # type: ignore[assignment]
            assert [t.out_biz_no for call in provider.calls for t in call] == [payout.out_biz_no]
            assert [p.status for p in await w.payouts()] == ["paid"]
