"""The whole system as operators run it: `scripts/run.py` (what `make run` starts) brings up the three
services and the payment simulator as separate processes, on the embedded default (SQLite and the embedded
event log) and on PostgreSQL with the real Kafka broker. Over HTTP only:

- a refund of a shipped order (R-RO-SHIPPED): case-api asks for an intercept, the watcher hears the parcel
  turn back from the warehouse's scans, case-api lets the refund proceed;
- a cashback (R-CASHBACK): approved in case-api, paid once by payout-worker through the simulator, and the
  payment reported back to the task;
- and each service's /metrics carries the series operators alert on.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aftersales_shared import topics
from aftersales_shared.bus import OutRecord
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.events import CloudEvent
from aftersales_testing import Metrics, scrape
from case_api_testing import order_body
from watcher_testing import scan as watcher_scan

from .harness import DATABASES, SHOP, Stack, order


def scan(tracking_no: str, order_id: str, status: str, ago: timedelta) -> dict[str, Any]:
    """The watcher tests' tracking event, of this test's order and shop, `ago` before now."""
    when = datetime.now(UTC) - ago
    return watcher_scan(status, when, tracking_no=tracking_no, order_id=order_id, shop_id=SHOP)


async def refund_of_a_shipped_order(s: Stack) -> dict[str, Any]:
    order_id, tracking_no = f"o-{uuid.uuid4().hex[:8]}", f"SF{uuid.uuid4().int % 10**12:012d}"
    await s.call("case-api", "PUT", f"/v1/orders/{order_id}", json=order(tracking_no, signed=False))
    await s.call(
        "logistics-watcher",
        "POST",
        "/v1/tracking-events",
        json={"events": [scan(tracking_no, order_id, "in_transit", timedelta(hours=20))]},
    )
    body = {
        "order_id": order_id,
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "refund_only",
        "reason": "no_reason",
    }
    case = await s.call("case-api", "POST", "/v1/cases", json=body, headers={"Idempotency-Key": order_id})

    async def act(action: str, **fields: Any) -> dict[str, Any]:
        path = f"/v1/cases/{case['id']}/actions/{action}"
        return dict(
            await s.call("case-api", "POST", path, json={"expected_version": case["version"], **fields})
        )

    case = await act("record_retention", offer="coupon", outcome="declined")
    case = await act("approve")
    case = await act("request_intercept")
    assert case["status"] == "intercepting"
    early = await s.clients["case-api"].post(f"/v1/cases/{case['id']}/actions/refund", json={})
    assert early.status_code == 409, early.text  # not while the parcel may still reach the buyer
    # The parcel turns back (before or after the intercept request reaches the watcher: either way).

    await s.call(
        "logistics-watcher",
        "POST",
        "/v1/tracking-events",
        json={"events": [scan(tracking_no, order_id, "returning", timedelta(minutes=5))]},
    )

    async def intercepted() -> dict[str, Any] | None:
        now = await s.call("case-api", "GET", f"/v1/cases/{case['id']}")
        return now if now["status"] == "approved" and now["details"].get("intercepted_at") else None

    case = await s.until("the watcher's intercepted milestone to reach the case", intercepted)
    case = await act("refund")
    assert case["status"] == "refunded"
    timeline = await s.call("case-api", "GET", f"/v1/cases/{case['id']}/timeline")
    assert "logistics-watcher" in {e["actor"] for e in timeline}
    return case


async def cashback_paid_once(s: Stack) -> dict[str, Any]:
    order_id, tracking_no = f"o-{uuid.uuid4().hex[:8]}", f"SF{uuid.uuid4().int % 10**12:012d}"
    await s.call("case-api", "PUT", f"/v1/orders/{order_id}", json=order(tracking_no, signed=True))
    body = {
        "order_id": order_id,
        "line_id": "L1",
        "reason": "other",
        "amount": "5.00",
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }
    task = await s.call(
        "case-api", "POST", "/v1/cashback-tasks", json=body, headers={"Idempotency-Key": order_id}
    )
    task = await s.call("case-api", "POST", f"/v1/cashback-tasks/{task['id']}/approve")
    assert task["status"] == "approved"

    async def in_the_ledger() -> list[dict[str, Any]]:
        page = await s.call("payout-worker", "GET", "/v1/payouts", params={"cashback_task_id": task["id"]})
        return list(page["items"])

    [payout] = await s.until("the approval to reach payout-worker", in_the_ledger)
    assert payout["amount"] == "5.00"
    await s.call("payout-worker", "POST", "/v1/batches/flush", headers={"Idempotency-Key": task["id"]})

    async def paid() -> dict[str, Any] | None:
        now = await s.call("case-api", "GET", f"/v1/cashback-tasks/{task['id']}")
        return now if now["status"] == "paid" else None

    task = await s.until("the payment to be reported back to case-api", paid)
    assert task["payout_id"] == payout["id"]
    transfers = (await s.call("payout-simulator", "GET", "/admin/transfers"))["transfers"]
    assert [t["out_biz_no"] for t in transfers if t["out_biz_no"] == payout["out_biz_no"]] == [
        payout["out_biz_no"]
    ]
    return task


# The buyer of case-api's sample order and the payee of the cashback, in the forms this test sends them.
BUYER = order_body()["buyer"]
PAYEE = {"alipay_account": BUYER["alipay_account"], "name": BUYER["name"]}
SCAN_TEXT = f"已签收，签收人：{BUYER['name']}，电话 138 1234 5678，地址 {BUYER['address']}"


async def requests_that_fail(s: Stack) -> None:
    """Refusals that carry the buyer's data in every form (422s, 404s), and, on the embedded log, records
    payout-worker's consumer cannot handle (parked on the DLQ, their error logged)."""
    bad_order = order("SF000000000001", signed=False)
    bad_order["buyer"] = {**BUYER, "phone": "+86 138-1234-5678"}
    bad_order["paid_at"] = "yesterday"
    cashback = {"order_id": "o-missing", "line_id": "L1", "reason": "other", "amount": "5.00", "payee": PAYEE}
    bad_scan = {"tracking_no": "SF000000000001", "description": SCAN_TEXT, "status": "lost?"}
    failures = [
        ("case-api", "PUT", "/v1/orders/o-refused", {"json": bad_order}, 422),
        ("case-api", "GET", "/v1/orders/o-missing", {}, 404),
        ("case-api", "POST", "/v1/cashback-tasks", {"json": cashback}, 404),
        ("logistics-watcher", "POST", "/v1/tracking-events", {"json": {"events": [bad_scan]}}, 422),
        ("payout-worker", "GET", "/v1/payouts/po_missing", {}, 404),
        ("payout-worker", "POST", "/v1/payouts/po_missing/cancel", {}, 404),
    ]
    for service, method, path, kwargs, status in failures:
        response = await s.clients[service].request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"

    events = s.log.parent / "data" / "events.db"
    if not events.exists():
        return  # on Kafka the test holds no producer credentials of its own
    bus = EmbeddedBus(events)
    await bus.start()
    try:
        not_an_event = json.dumps({"buyer": BUYER, "payee": PAYEE}, ensure_ascii=False).encode()
        no_task = CloudEvent(
            id=f"evt-{uuid.uuid4().hex}",
            source="/forged",
            type="aftersales.cashback.approved.v1",
            subject="cb-none",
            time=datetime.now(UTC),
            data={"order_id": None, "payee": {**PAYEE, "alipay_account": "+86 138 1234 5678"}},
        ).to_bytes()
        await bus.publish_batch([OutRecord(topics.CASHBACK, "cb-none", v) for v in (not_an_event, no_task)])
    finally:
        await bus.stop()

    async def parked() -> bool:
        return s.log.read_text(errors="replace").count("event parked on") >= 2

    await s.until("payout-worker to park the records it cannot handle", parked)


def unmasked_buyer_data(log: str) -> list[str]:
    """The log lines that show the buyer's phone (in any of the forms sent), street address, name or payee
    account."""
    phone = re.compile(r"138\D{0,3}1234\D{0,3}5678")
    words = (BUYER["address"][6:], "文三路", BUYER["name"], BUYER["alipay_account"], "zhangsan")
    return [line for line in log.splitlines() if phone.search(line) or any(w in line for w in words)]


async def test_a_refund_and_a_cashback_from_start_to_finish(stack: Stack) -> None:
    case = await refund_of_a_shipped_order(stack)
    task = await cashback_paid_once(stack)
    await requests_that_fail(stack)

    async def settled() -> dict[str, Metrics] | None:
        scrapes = {name: await scrape(stack.clients[name]) for name in DATABASES}
        return (
            scrapes
            if all(m.value("aftersales_outbox_backlog", service=n) == 0 for n, m in scrapes.items())
            else None
        )

    metrics = await stack.until("every outbox to drain", settled)
    cases, watcher, payouts = metrics["case-api"], metrics["logistics-watcher"], metrics["payout-worker"]
    assert cases.value("aftersales_cases_by_status", status="refunded") == 1
    assert watcher.labels("aftersales_open_alerts_by_kind", "kind") == {
        "no_first_scan",
        "stalled",
        "suspected_lost",
        "suspected_false_delivery",
    }
    assert payouts.value("aftersales_payouts_by_status", status="paid") == 1
    for name, scraped in metrics.items():
        assert scraped.labels("aftersales_consumer_lag", "group") == {name}, name
        assert scraped.labels("aftersales_consumer_lag", "partition"), name
        assert scraped.total("aftersales_http_request_duration_seconds_count", service=name) > 0, name
        assert scraped.value("aftersales_outbox_oldest_unpublished_age_seconds", service=name) == 0

    # The services' JSON logs follow both by their ids.
    lines = [json.loads(line) for line in stack.log.read_text().splitlines() if line.startswith("{")]
    assert any(
        line["message"] == "parcel intercepted"
        and line["order_id"] == case["order_id"]
        and line["tracking_no"]
        for line in lines
    )
    assert any(
        line["message"] == "case refund: approved → refunded" and line["case_id"] == case["id"]
        for line in lines
    )
    assert any(
        line["message"] == "payout paid" and line.get("payout_id") == task["payout_id"] for line in lines
    )
    # No line of any service, after refusals and dead letters that carried them, shows the buyer's phone,
    # street address, name or payee account.
    leaked = unmasked_buyer_data(stack.log.read_text(errors="replace"))
    assert not leaked, "\n".join(leaked[:20])
