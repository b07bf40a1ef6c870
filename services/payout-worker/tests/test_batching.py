"""Batching (R-CASHBACK): at most 1,000 transfers a batch; a batch closes at the working day's cut-off
(17:30 Asia/Shanghai), when full, or on a flush; approvals after the cut-off wait for the next working day."""

from __future__ import annotations

from pathlib import Path

from payout_testing import FakeProvider, Worker, approved, at, running_worker


class TestCutoff:
    async def test_a_days_approvals_leave_together_at_the_cutoff(self, worker: Worker) -> None:
        await worker.deliver(*(approved(f"cb-{i}", when=at("2026-11-05 10:00")) for i in range(3)))
        await worker.tick(at("2026-11-05 17:29:59"))
        assert set((await worker.statuses()).values()) == {"pending"}
        await worker.tick(at("2026-11-05 17:30:00"))
        assert set((await worker.statuses()).values()) == {"paid"}
        assert [len(call) for call in worker.provider.calls] == [3]

    async def test_an_approval_after_the_cutoff_is_paid_the_next_working_day(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-late", when=at("2026-11-05 17:45")))
        await worker.tick(at("2026-11-05 23:00"))
        assert await worker.statuses() == {"cb-late": "pending"}
        await worker.tick(at("2026-11-06 17:30"))
        (payout,) = await worker.payouts()
        assert payout.status == "paid" and payout.due_at == at("2026-11-06 17:30")

    async def test_a_late_event_for_a_past_cutoff_is_paid_at_once(self, worker: Worker) -> None:
        """Approved at 17:29, delivered after the cut-off (consumer lag): still that day's money."""
        worker.clock.set(at("2026-11-05 17:40"))
        await worker.deliver(approved("cb-lag", when=at("2026-11-05 17:29")))
        await worker.tick()
        assert await worker.statuses() == {"cb-lag": "paid"}

    async def test_a_worker_that_was_down_at_the_cutoff_pays_when_it_is_back(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1", when=at("2026-11-05 09:00")))
        await worker.tick(at("2026-11-05 19:05"))
        assert await worker.statuses() == {"cb-1": "paid"}

    async def test_the_cutoff_is_configurable(self, tmp_path: Path) -> None:
        async for w in running_worker(tmp_path, cutoff="16:00"):
            await w.deliver(approved("cb-1", when=at("2026-11-05 16:30")))
            await w.tick(at("2026-11-05 17:30"))
            assert await w.statuses() == {"cb-1": "pending"}  # after 16:00: tomorrow's
            await w.tick(at("2026-11-06 16:00"))
            assert await w.statuses() == {"cb-1": "paid"}


class TestBusinessCalendar:
    async def test_approvals_before_the_national_day_holiday_wait_for_the_first_working_day(
        self, worker: Worker
    ) -> None:
        """2026-10-01..07 are public holidays: nothing leaves on them, not even a full batch."""
        await worker.deliver(
            approved("cb-eve", when=at("2026-09-30 18:00")),
            approved("cb-holiday", when=at("2026-10-03 11:00")),
        )
        for day in range(1, 8):
            await worker.tick(at(f"2026-10-0{day} 17:30"))
        assert set((await worker.statuses()).values()) == {"pending"}
        await worker.tick(at("2026-10-08 17:30"))
        assert await worker.statuses() == {"cb-eve": "paid", "cb-holiday": "paid"}

    async def test_a_make_up_working_saturday_pays(self, worker: Worker) -> None:
        """2026-10-10 is a 调休 working Saturday: Friday evening's approvals are paid on it, not on Monday."""
        await worker.deliver(approved("cb-fri", when=at("2026-10-09 18:00")))
        await worker.tick(at("2026-10-10 17:29"))
        assert await worker.statuses() == {"cb-fri": "pending"}
        await worker.tick(at("2026-10-10 17:30"))
        (payout,) = await worker.payouts()
        assert payout.status == "paid" and payout.due_at == at("2026-10-10 17:30")

    async def test_a_sunday_approval_waits_for_monday(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-sun", when=at("2026-10-11 10:00")))
        await worker.tick(at("2026-10-11 17:30"))
        assert await worker.statuses() == {"cb-sun": "pending"}
        await worker.tick(at("2026-10-12 17:30"))
        assert await worker.statuses() == {"cb-sun": "paid"}

    async def test_operator_holidays_are_days_off(self, tmp_path: Path) -> None:
        async for w in running_worker(tmp_path, extra_holidays=["2026-11-06"]):
            await w.deliver(approved("cb-1", when=at("2026-11-05 18:00")))
            await w.tick(at("2026-11-06 17:30"))
            assert await w.statuses() == {"cb-1": "pending"}
            await w.tick(at("2026-11-09 17:30"))
            assert await w.statuses() == {"cb-1": "paid"}


class TestSize:
    async def test_full_batches_leave_during_the_day_and_the_rest_at_the_cutoff(self, tmp_path: Path) -> None:
        async for w in running_worker(tmp_path, batch_size=10):
            await w.deliver(*(approved(f"cb-{i:02}", when=at("2026-11-05 10:00")) for i in range(25)))
            await w.tick(at("2026-11-05 11:00"))
            provider: FakeProvider = w.provider
            assert [len(c) for c in provider.calls] == [10, 10]
            assert list((await w.statuses()).values()).count("pending") == 5
            await w.tick(at("2026-11-05 17:30"))
            assert [len(c) for c in provider.calls] == [10, 10, 5]
            assert set((await w.statuses()).values()) == {"paid"}
            batches = (await w.call("GET", "/v1/batches", "ops")).json()["items"]
            assert sorted((b["trigger"], b["size"]) for b in batches) == [
                ("cutoff", 5),
                ("full", 10),
                ("full", 10),
            ]

    async def test_full_batches_of_tomorrow_wait_until_tomorrow(self, tmp_path: Path) -> None:
        async for w in running_worker(tmp_path, batch_size=5):
            await w.deliver(*(approved(f"cb-{i}", when=at("2026-11-05 18:00")) for i in range(12)))
            await w.tick(at("2026-11-05 20:00"))
            assert set((await w.statuses()).values()) == {"pending"}
            await w.tick(at("2026-11-06 08:00"))
            assert list((await w.statuses()).values()).count("paid") == 10

    async def test_a_batch_never_holds_more_than_1000(self, worker: Worker) -> None:
        await worker.deliver(*(approved(f"cb-{i:04}", when=at("2026-11-05 10:00")) for i in range(1001)))
        await worker.tick(at("2026-11-05 10:01"))
        provider: FakeProvider = worker.provider
        assert [len(c) for c in provider.calls] == [1000]
        await worker.tick(at("2026-11-05 17:30"))
        assert [len(c) for c in provider.calls] == [1000, 1]
        assert len(provider.executed) == 1001


class TestFlush:
    async def test_flush_pays_now(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1"), approved("cb-2", when=at("2026-11-05 19:00")))
        response = await worker.call("POST", "/v1/batches/flush", "ops", headers={"Idempotency-Key": "f-1"})
        assert response.status_code == 202, response.text
        assert response.json()["payouts"] == 2
        replay = await worker.call("POST", "/v1/batches/flush", "ops", headers={"Idempotency-Key": "f-1"})
        assert replay.json() == response.json() and replay.headers["Idempotent-Replayed"] == "true"
        await worker.tick()
        assert await worker.statuses() == {"cb-1": "paid", "cb-2": "paid"}

    async def test_flush_is_for_ops(self, worker: Worker) -> None:
        assert (await worker.call("POST", "/v1/batches/flush", "support")).status_code == 403
        assert (await worker.client.post("/v1/batches/flush")).status_code == 401

    async def test_a_shop_scoped_key_flushes_its_shops_only(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-a"), approved("cb-b", shop_id="shop-b"))
        response = await worker.call("POST", "/v1/batches/flush", "ops")
        assert response.json()["payouts"] == 1
        await worker.tick()
        assert await worker.statuses() == {"cb-a": "paid", "cb-b": "pending"}
