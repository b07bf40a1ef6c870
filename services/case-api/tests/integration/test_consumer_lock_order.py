"""case-api's consumer applies a fetch's partitions concurrently, and the events of one order arrive on
several partitions (payout results are keyed by cashback task, parcel events by tracking number). Each
transaction takes the order locks its events need at once, in id order, before handling any of them; so
two partitions naming the same orders in opposite orders wait for each other instead of deadlocking. The
escalation of overdue carrier answers, too, takes the orders' locks before the entries and cases it marks,
as a verdict recorded meanwhile does."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from aftersales_shared import contracts, topics
from aftersales_shared.auth import Role, system_actor
from aftersales_shared.bus import Record
from aftersales_shared.db import unit_of_work
from aftersales_shared.events import CloudEvent, ParcelMilestone, envelope
from case_api import handlers
from case_api.domain.workflow import Action
from case_api.reactions import system_context
from case_api.reactions.logistics import escalate_overdue
from case_api.schemas import RecordCarrierVerdictBody
from case_api_testing import NOW, Api, payout_result, signed
from sqlalchemy import text

pytestmark = pytest.mark.postgres
ROUNDS = 6
SUPPORT = system_actor("support-desk", Role.support)
SHIPPED_AT = "2026-11-02T09:00:00+08:00"


async def approved_task(api: Api, order_id: str) -> dict[str, Any]:
    body = {
        "order_id": order_id,
        "line_id": "L1",
        "reason": "other",
        "amount": "2.00",
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }
    created = await api.call("POST", "/v1/cashback-tasks", "support", json=body)
    assert created.status_code == 201, created.text
    approved = await api.call("POST", f"/v1/cashback-tasks/{created.json()['id']}/approve", "support")
    assert approved.status_code == 200, approved.text
    return dict(approved.json())


def delivered(order_id: str) -> CloudEvent:
    """logistics-watcher's sign-off of the order's parcel (its tracking number is `SF-<order id>`)."""
    data = ParcelMilestone(
        tracking_no=f"SF-{order_id}",
        order_id=order_id,
        carrier="SF",
        direction="outbound",
        milestone="delivered",
        occurred_at=NOW,
    )
    contract = contracts.PARCEL_EVENTS["delivered"]
    return envelope(
        source="/logistics-watcher", type=contract.type, subject=data.tracking_no, data=data, at=NOW
    )


def lane(topic: str, partition: int, *events: CloudEvent) -> list[Record]:
    return [Record(topic, partition, offset, None, e.to_bytes()) for offset, e in enumerate(events)]


async def deadlocks(api: Api) -> int:
    """The database's deadlock count. The server counts a backend's deadlocks when it next reports its
    statistics, at the latest when it exits: so the pool's connections are closed first."""
    engine = api.app.state.sessions.kw["bind"]
    await engine.dispose()
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        )
        return int(found.scalar_one())


class TestPartitionsOfOneFetch:
    async def test_orders_named_in_opposite_orders_never_deadlock(
        self, pg_api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two partitions of payout results pay tasks of o-1 and o-2 in opposite orders, and a partition of
        parcel events signs for o-2's parcel and then o-1's, all at once, round after round."""
        api = pg_api
        for order_id in ("o-1", "o-2"):
            shipment = {"carrier": "SF", "tracking_no": f"SF-{order_id}", "shipped_at": SHIPPED_AT}
            await api.put_order(order_id, signed_at=None, shipment=shipment)
        rounds = [[await approved_task(api, o) for o in ("o-1", "o-2", "o-2", "o-1")] for _ in range(ROUNDS)]
        runner = api.app.state.consumers[0]
        before = await deadlocks(api)
        caplog.set_level(logging.WARNING, logger="aftersales_shared.consumer")
        for tasks in rounds:
            paid = [signed(api, payout_result(task, "paid")) for task in tasks]
            await asyncio.gather(
                runner.handle_chunk(lane(topics.PAYOUT_RESULTS, 0, *paid[:2])),
                runner.handle_chunk(lane(topics.PAYOUT_RESULTS, 1, *paid[2:])),
                runner.handle_chunk(lane(topics.PARCELS, 0, delivered("o-2"), delivered("o-1"))),
            )
        fell_back = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
        assert (fell_back, await deadlocks(api) - before) == ([], 0)
        for task in (task for tasks in rounds for task in tasks):
            read = (await api.call("GET", f"/v1/cashback-tasks/{task['id']}", "support")).json()
            assert (read["status"], read["version"]) == ("paid", task["version"] + 1), read
        for order_id in ("o-1", "o-2"):
            order = (await api.call("GET", f"/v1/orders/{order_id}", "support")).json()
            assert order["signed_at"] is not None, order


async def reported_case(api: Api) -> dict[str, Any]:
    """A lost parcel's case, reported to the carrier: its answer is due within the SLA."""
    await api.put_order(signed_at=None)
    opened = await api.open_case(remedy="reship", reason="lost")
    assert opened.status_code == 201, opened.text
    answer = await api.act(opened.json(), "report_to_carrier")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


class TestEscalation:
    async def test_an_escalation_waits_for_a_verdict_being_recorded(self, pg_api: Api) -> None:
        """The SLA is overdue; support is recording the carrier's verdict (holding the order's lock, then the
        case's) when the escalation runs. The escalation waits, then passes over the answered case."""
        api = pg_api
        case = await reported_case(api)
        before = await deadlocks(api)

        async def escalate() -> int:
            async with unit_of_work(api.app.state.sessions) as session:
                return await escalate_overdue(session, NOW + timedelta(days=30))

        verdict = RecordCarrierVerdictBody(confirmed=True, verdict="确认丢失")
        async with unit_of_work(api.app.state.sessions) as session:
            ctx = system_context(session, NOW, SUPPORT)
            await handlers.locked_case(ctx, case["id"])  # the verdict's first step, taken a moment early
            escalating = asyncio.create_task(escalate())
            await asyncio.sleep(0.3)  # the escalation is waiting for a lock now
            await handlers.act(ctx, case["id"], Action.record_carrier_verdict, verdict, None)
        assert await escalating == 0
        assert await deadlocks(api) - before == 0
        actions = [e["action"] for e in (await api.call("GET", f"/v1/cases/{case['id']}/timeline")).json()]
        assert actions == ["open", "report_to_carrier", "record_carrier_verdict"]
