"""case-api's reactions to payouts.results.v1: a paid cashback task tells the customer and settles its
price-protection case; a failed one records the provider's code and releases its allowance (R-COMP-CAP);
a result payout-worker did not sign changes nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.events import CloudEvent, PayoutResult, envelope
from aftersales_shared.outbox import OutboxMessage
from aftersales_shared.signing import ResultSigner
from case_api.models import LedgerEntry
from case_api.webhooks.fanout import shop_of
from case_api_testing import Api, order_body, signed
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import col, select

PAID_AT = datetime.fromisoformat("2026-11-05T17:30:02+08:00")


async def approved_task(api: Api, amount: str = "30.00") -> dict[str, Any]:
    await api.put_order()
    body = {
        "order_id": "o-1",
        "line_id": "L1",
        "reason": "other",
        "amount": amount,
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }
    task = (await api.call("POST", "/v1/cashback-tasks", "support", json=body)).json()
    approved = await api.call("POST", f"/v1/cashback-tasks/{task['id']}/approve", "support")
    assert approved.status_code == 200, approved.text
    return dict(approved.json())


def result(task: dict[str, Any], status: str, **fields: Any) -> CloudEvent:
    data = PayoutResult(
        payout_id="po_1",
        cashback_task_id=task["id"],
        order_id=task["order_id"],
        amount=Decimal(task["amount"]),
        status=status,
        out_biz_no="po_1",
        **fields,
    )
    return envelope(
        source="/payout-worker", type=f"payouts.payout.{status}.v1", subject="po_1", data=data, at=PAID_AT
    )


async def deliver(api: Api, *events: CloudEvent, sign: bool = True) -> None:
    """Publish the results (signed as payout-worker signs them, unless `sign` is False) and wait until
    case-api's consumer has handled or parked each."""
    runner = api.app.state.consumers[0]
    before = runner.processed + runner.dead_lettered
    for event in events:
        sent = signed(api, event) if sign else event
        await api.bus.publish(topics.PAYOUT_RESULTS, event.data["cashback_task_id"], sent.to_bytes())
    for _ in range(200):
        if runner.processed + runner.dead_lettered >= before + len(events):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the results were not consumed")


async def outbox(api: Api, type_: str) -> list[CloudEvent]:
    async with api.app.state.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    return [e for e in (CloudEvent.from_bytes(r.payload) for r in rows) if e.type == type_]


async def task_of(api: Api, task_id: str) -> dict[str, Any]:
    return dict((await api.call("GET", f"/v1/cashback-tasks/{task_id}", "support")).json())


class TestPaid:
    async def test_the_task_is_paid_and_the_customer_told_once(self, any_db_api: Api) -> None:
        api = any_db_api  # the same result twice, and again under a new id: one payment, one message
        task = await approved_task(api)
        paid = result(task, "paid", provider_reference="sim000000000001", paid_at=PAID_AT)
        await deliver(api, paid, paid, result(task, "paid", paid_at=PAID_AT))
        now = await task_of(api, task["id"])
        assert (now["status"], now["payout_id"], now["out_biz_no"]) == ("paid", "po_1", "po_1")
        assert now["paid_at"].startswith("2026-11-05T09:30:02") and now["version"] == task["version"] + 1
        (note,) = await outbox(api, "aftersales.notification.requested.v1")
        assert note.subject == task["id"] and note.data["template"] == "cashback_paid"
        assert note.data["order_id"] == "o-1" and "30.00" in note.data["message_zh"]
        assert "2026-11-05 17:30" in note.data["message_zh"]
        async with api.app.state.sessions() as session:
            row = (await session.exec(select(OutboxMessage).where(OutboxMessage.event_id == note.id))).one()
        assert (row.topic, row.key) == (topics.CASES, "o-1")

    async def test_a_paid_price_protection_case_is_closed(self, api: Api) -> None:
        await api.put_order()
        new = order_body(
            paid_at="2026-11-04T20:00:00+08:00",
            shipment=None,
            signed_at=None,
            lines=[{**order_body()["lines"][0], "unit_price": "99.00", "paid_amount": "198.00"}],
        )
        await api.put_order("o-2", **{k: v for k, v in new.items() if k != "shop_id"})
        case = (
            await api.open_case(
                "support",
                remedy="price_protection",
                reason="price_drop",
                lines=[{"line_id": "L1", "quantity": 2}],
                new_order_id="o-2",
            )
        ).json()
        case = (await api.act(case, "approve")).json()
        assert case["status"] == "approved", case
        (task,) = (
            await api.call("GET", "/v1/cashback-tasks", "support", params={"case_id": case["id"]})
        ).json()["items"]
        await deliver(api, result(task, "paid", paid_at=PAID_AT))
        closed = (await api.call("GET", f"/v1/cases/{case['id']}", "support")).json()
        assert closed["status"] == "closed"
        last = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        entries = last["items"] if isinstance(last, dict) else last
        assert (entries[-1]["action"], entries[-1]["actor"]) == ("close", "payout-worker")
        assert [e.subject for e in await outbox(api, "aftersales.case.closed.v1")] == [case["id"]]


class TestFailed:
    async def test_the_task_fails_with_the_code_and_the_allowance_returns(self, api: Api) -> None:
        task = await approved_task(api, amount="238.00")  # L1's whole paid amount
        over = {
            "order_id": "o-1",
            "line_id": "L1",
            "reason": "other",
            "amount": "10.00",
            "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
        }
        refused = await api.call("POST", "/v1/cashback-tasks", "support", json=over)
        assert refused.status_code == 422 and refused.json()["rule"] == "R-COMP-CAP"
        await deliver(api, result(task, "failed", failure_code="PAYEE_NOT_EXIST"))
        now = await task_of(api, task["id"])
        assert (now["status"], now["failure_code"], now["paid_at"]) == ("failed", "PAYEE_NOT_EXIST", None)
        async with api.app.state.sessions() as session:
            entries = await session.exec(
                select(LedgerEntry).where(LedgerEntry.cashback_task_id == task["id"])
            )
            assert [e.status for e in entries.all()] == ["released"]
        assert (await api.call("POST", "/v1/cashback-tasks", "support", json=over)).status_code == 201
        assert await outbox(api, "aftersales.notification.requested.v1") == []

    async def test_a_result_for_an_unknown_task_is_parked(self, api: Api) -> None:
        api.app.state.consumers[0]._backoff = 0
        ghost = result({"id": "cb-ghost", "order_id": "o-x", "amount": "1.00"}, "paid", paid_at=PAID_AT)
        await deliver(api, ghost)
        dlq = await api.bus.consumer("inspect", [topics.dlq(topics.PAYOUT_RESULTS)])
        (parked,) = await dlq.fetch(timeout_ms=200)
        assert CloudEvent.from_bytes(parked.value).id == ghost.id


class TestForged:
    """Anyone who can write to payouts.results.v1 could send a result; only payout-worker can sign one. A
    forged `failed` would release the money of a payout in flight (or made), to be paid a second time."""

    async def test_a_result_not_signed_by_payout_worker_changes_nothing_and_is_parked(
        self, any_db_api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        api = any_db_api  # on SQLite and PostgreSQL
        task = await approved_task(api, amount="238.00")  # L1's whole paid amount
        genuine = result(task, "failed", failure_code="PAYEE_NOT_EXIST")
        data = PayoutResult.model_validate(genuine.data)
        attacker = ResultSigner(Ed25519PrivateKey.generate())
        paid = signed(api, result(task, "paid", paid_at=PAID_AT))
        forgeries = [
            genuine,  # unsigned
            genuine.model_copy(update={"data": attacker.sign(data).model_dump(mode="json")}),  # another key
            genuine.model_copy(update={"data": paid.data | {"status": "failed"}}),  # status changed
            paid.model_copy(update={"id": "evt-spliced", "type": genuine.type}),  # a paid result, as failed
        ]
        await deliver(api, *forgeries, sign=False)
        assert (await task_of(api, task["id"]))["status"] == "approved"
        async with api.app.state.sessions() as session:
            entries = await session.exec(
                select(LedgerEntry).where(LedgerEntry.cashback_task_id == task["id"])
            )
            assert [e.status for e in entries.all()] == ["reserved"]
        dlq = await api.bus.consumer("inspect", [topics.dlq(topics.PAYOUT_RESULTS)])
        parked = []
        for _ in range(50):
            parked += await dlq.fetch(timeout_ms=200)
            if len(parked) == len(forgeries):
                break
        errors = [dict(r.headers)["error"].decode() for r in parked]
        assert len(errors) == 4 and all("not authenticated" in e for e in errors), errors
        assert "no signature" in errors[0] and "does not trust" in errors[1] and "does not match" in errors[2]
        assert "is not that of its signed status paid" in errors[3]
        # Parked at once: no retry makes a forgery genuine, and retries would hold the partition up.
        assert not [r for r in caplog.records if "attempt 2/" in r.getMessage()]
        await deliver(api, genuine)  # the same result, signed by payout-worker: applied
        assert (await task_of(api, task["id"]))["status"] == "failed"

    async def test_a_result_names_its_shop_by_its_task_not_by_a_shop_id_added_to_it(
        self, any_db_api: Api
    ) -> None:
        api = any_db_api
        """A genuine result sent again with another shop's `shop_id` added (the signature does not cover a
        field the result does not have) still reaches only its task's shop's webhooks."""
        task = await approved_task(api)
        spliced = signed(api, result(task, "paid", paid_at=PAID_AT)).data | {"shop_id": "shop-b"}
        async with api.app.state.sessions() as session:
            assert await shop_of(session, spliced) == task["shop_id"] != "shop-b"
