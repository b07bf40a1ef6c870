"""Every simulator failure mode through the payout state machine (ARCHITECTURE.md, Money): an ambiguous
answer (timeout, 5xx, SYSTEM_ERROR) → unknown → query → the identical request again, never a new key;
a definite failure → failed with the provider's code. The simulator's record proves nothing paid twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared.clock import FrozenClock
from payout_testing import NOW, Simulator, Worker, approved, assert_paid_once, running_worker
from payout_worker.providers.simulator import SimulatorProvider

TIMEOUT = 0.5  # the worker's provider timeout in these tests


@pytest.fixture
async def paying(tmp_path: Path, simulator: Simulator) -> AsyncIterator[Worker]:
    clock = FrozenClock(NOW)
    provider = SimulatorProvider(simulator.url, timeout=TIMEOUT, qps=100)
    async for w in running_worker(
        tmp_path,
        provider,
        clock=clock,
        provider_timeout_seconds=TIMEOUT,
        recover_after_seconds=5,
        retry_base_seconds=2,
    ):
        yield w


async def pay_now(w: Worker, *task_ids: str) -> None:
    await w.deliver(*(approved(t) for t in task_ids))
    assert (await w.call("POST", "/v1/batches/flush", "ops")).status_code == 202
    await w.tick()


async def recover(w: Worker, seconds: float = 10) -> None:
    """Let the backoff pass and run the scheduler again."""
    w.clock.advance(seconds=seconds)
    await w.tick()


class TestAnswers:
    async def test_a_normal_batch_is_paid_once(self, paying: Worker, simulator: Simulator) -> None:
        await pay_now(paying, "cb-1", "cb-2")
        payouts = await paying.payouts()
        assert {p.status for p in payouts} == {"paid"}
        assert all(p.provider_order_id and p.provider_order_id.startswith("sim") for p in payouts)
        assert_paid_once(simulator, payouts)
        assert simulator.stats()["transfer_items"] == 2

    async def test_slow_but_within_the_timeout_is_paid(self, paying: Worker, simulator: Simulator) -> None:
        simulator.behave(latency_ms=300)
        await pay_now(paying, "cb-1")
        assert await paying.statuses() == {"cb-1": "paid"}

    @pytest.mark.parametrize(
        ("behaviour", "code", "account"),
        [
            ({"fault": "fail", "fail_code": "PAYEE_NOT_EXIST"}, "PAYEE_NOT_EXIST", "zhangsan@example.com"),
            ({"fail_accounts": ["nobody@example.com"]}, "PAYEE_NOT_EXIST", "nobody@example.com"),
            ({"max_amount": "5.00"}, "EXCEED_LIMIT_SM_AMOUNT", "zhangsan@example.com"),
        ],
    )
    async def test_a_definite_failure_is_failed_with_the_providers_code(
        self, paying: Worker, simulator: Simulator, behaviour: dict[str, object], code: str, account: str
    ) -> None:
        simulator.behave(**behaviour)
        await paying.deliver(approved("cb-1", account=account))
        await paying.call("POST", "/v1/batches/flush", "ops")
        await paying.tick()
        (payout,) = await paying.payouts()
        assert (payout.status, payout.failure_code) == ("failed", code)
        await recover(paying, 600)
        assert simulator.stats()["transfer_items"] == 1 and simulator.stats()["query_items"] == 0  # final
        (result,) = await paying.results()
        assert result.type == "payouts.payout.failed.v1" and result.data["failure_code"] == code


class TestAmbiguousAnswers:
    @pytest.mark.parametrize("fault", ["timeout", "system_error", "http_500"])
    @pytest.mark.parametrize("executed", [True, False], ids=["executed", "not-executed"])
    async def test_query_then_the_identical_request(
        self, paying: Worker, simulator: Simulator, fault: str, executed: bool
    ) -> None:
        simulator.behave(fault=fault, fault_executes=executed, fault_calls=1, hang_seconds=2)
        await pay_now(paying, "cb-1", "cb-2")
        first = await paying.payouts()
        assert {p.status for p in first} == {"unknown"}
        assert {p.failure_code for p in first} == {
            {"timeout": "TIMEOUT", "system_error": "SYSTEM_ERROR", "http_500": "HTTP_500"}[fault]
        }
        await recover(paying)
        payouts = await paying.payouts()
        assert {p.status for p in payouts} == {"paid"}
        assert [p.out_biz_no for p in payouts] == [p.out_biz_no for p in first] == [p.id for p in first]
        assert [p.attempts for p in payouts] == [1 if executed else 2] * 2
        stats = simulator.stats()
        assert stats["query_items"] == 2
        assert stats["transfer_items"] == (2 if executed else 4)  # resent only what never executed
        assert_paid_once(simulator, payouts)

    async def test_an_unanswered_query_keeps_it_unknown_with_growing_waits(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        simulator.behave(fault="system_error", fault_executes=True, query_fault="system_error")
        await pay_now(paying, "cb-1")
        waits = []
        for _ in range(3):
            (payout,) = await paying.payouts()
            assert payout.status == "unknown"
            assert payout.check_after is not None
            waits.append((payout.check_after - paying.clock.now()).total_seconds())
            paying.clock.set(payout.check_after)
            await paying.tick()
        assert simulator.stats()["transfer_items"] == 1  # never a second transfer without a definite answer
        simulator.behave()
        await recover(paying, 600)
        assert await paying.statuses() == {"cb-1": "paid"}
        assert_paid_once(simulator, await paying.payouts())
        assert waits == [2, 2, 4]  # as long as it has been unresolved: the waits double

    async def test_a_payout_left_submitted_by_a_crash_is_queried_after_the_lease(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        """The state is committed before the call; a worker that died there leaves `submitted`."""
        await paying.deliver(approved("cb-1"))
        async with paying.app.state.sessions() as session:
            await paying.engine.close_batches(session, trigger="flush", due_by=None)
            await session.commit()
        from payout_worker import repository as repo

        async with paying.app.state.sessions() as session:  # what send_next_batch commits first
            transfers = await paying.engine._mark_submitted(session, await repo.claim_batched(session, 10))
            await session.commit()
        await paying.engine.provider.transfer(transfers)  # executed, but the worker "died" before recording
        assert await paying.statuses() == {"cb-1": "submitted"}
        await recover(paying, 1)
        assert await paying.statuses() == {"cb-1": "submitted"}  # the lease has not run out
        await recover(paying, 5)
        assert await paying.statuses() == {"cb-1": "paid"}
        assert simulator.stats()["transfer_items"] == 1
        assert_paid_once(simulator, await paying.payouts())


class TestSimulator:
    def test_a_different_request_under_a_used_key_is_refused_and_counted(self, simulator: Simulator) -> None:
        transfer = {
            "out_biz_no": "po_x",
            "amount": "12.00",
            "payee_account": "a@example.com",
            "payee_name": "张三",
        }
        with simulator.admin() as client:
            first = client.post("/v1/batch-transfers", json={"transfers": [transfer]}).json()["results"][0]
            again = client.post("/v1/batch-transfers", json={"transfers": [transfer]}).json()["results"][0]
            other = client.post("/v1/batch-transfers", json={"transfers": [{**transfer, "amount": "13.00"}]})
        assert first["status"] == again["status"] == "SUCCESS" and first["order_id"] == again["order_id"]
        assert other.json()["results"][0]["code"] == "OUT_BIZ_NO_CONFLICT"
        stats = simulator.stats()
        assert (stats["executed"], stats["transfer_items"], stats["conflicts"]) == (1, 3, 1)

    def test_fault_calls_limits_a_fault(self, simulator: Simulator) -> None:
        simulator.behave(fault="http_500", fault_calls=2)
        transfer = {
            "out_biz_no": "po_y",
            "amount": "1.00",
            "payee_account": "a@example.com",
            "payee_name": "张三",
        }
        with simulator.admin() as client:
            codes = [
                client.post("/v1/batch-transfers", json={"transfers": [transfer]}).status_code
                for _ in range(3)
            ]
        assert codes == [500, 500, 200]
        assert simulator.stats()["executed"] == 1
