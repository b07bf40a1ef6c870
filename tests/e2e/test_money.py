"""Money invariants end to end (issue 10): whatever a storefront key and routine support approvals try at
once over HTTP, the transfers the payment simulator executed for an order never add up to more than the
buyer paid for it, no task is paid twice, and a cancelled task is never paid.

One order: line L1 paid 100.00 and a shipping fee of 10.00 (no 运费险), received yesterday, with the
buyer's Alipay account; two cheaper new orders of the same buyer for the same SKU (80.00 and 90.00: a
difference of 20.00 and of 10.00). Against it, one step after the other, each fired as a burst of
concurrent requests wherever concurrency is the attack:

0. twenty 100.00 cashback tasks at once on the free line, and the one created approved three times at
   once; ops then cancels its payout, so its money comes back (a failed payout releases it);
1. a refund-only case withdrawn by the storefront (cashback tasks will name it);
2. a price-protection claim naming the 80.00 order, approved; then twenty second claims naming the same
   new order at once, while 80.00 of the line is free (R-PRICE-PROTECT-ONCE must refuse them, not the cap);
3. a price-protection claim naming the 90.00 order, approved and rejected right after: its cashback task is
   cancelled, and payout-worker must hear that before anything is flushed;
4. one burst of 180 requests: 100.00 tasks (the line's full value), 80.00 tasks (all that is left), tasks
   naming the withdrawn case, shipping-fee tasks above the fee and at 4.00, claims naming either new order
   again (the rejected claim freed the 90.00 one). Every task and claim created is approved three times at
   once, and both new orders are claimed twenty times more.

Then ops flushes payout-worker (releasing anything a risk limit held, so that a limit cannot hide an
overpayment) until every payout is final, and the simulator's record of executed transfers is the judge.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from case_api_testing import order_body

from .harness import SHOP, Stack, iso

LINE_PAID = Decimal("100.00")
SHIPPING_FEE = Decimal("10.00")
BURST = 20  # requests of each kind at once
BUYER = order_body()["buyer"]
PAYEE = {"alipay_account": BUYER["alipay_account"], "name": BUYER["name"]}
FINAL = frozenset({"paid", "failed", "cancelled"})
ZERO = Decimal("0.00")


def one_line(price: str, **changes: Any) -> dict[str, Any]:
    """An order of this test's shop and buyer, with one line L1 of one unit of the sample SKU at `price`."""
    line = {**order_body()["lines"][0], "quantity": 1, "unit_price": price, "paid_amount": price}
    return order_body(shop_id=SHOP, lines=[line], **changes)


def total(items: Iterable[dict[str, Any]]) -> Decimal:
    return sum((Decimal(item["amount"]) for item in items), ZERO)


def accepted(answers: list[httpx.Response], ok: int, *refusals: str) -> list[dict[str, Any]]:
    """The answers with status `ok`; every other one must be a refusal naming one of `refusals`: a 422
    `policy_refused` with that rule and its zh/en messages, or a 409 or 422 with that code."""
    created = []
    for r in answers:
        if r.status_code == ok:
            created.append(dict(r.json()))
            continue
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        why = body.get("rule") or body.get("code")
        assert r.status_code in (409, 422) and why in refusals, (
            f"expected {ok} or a refusal naming one of {refusals}, got {r.status_code}: {r.text[:500]}"
        )
        if "rule" in body:
            assert body["code"] == "policy_refused" and body["message_zh"] and body["message_en"], body
    return created


@dataclass
class Shop:
    """The storefront, support and ops of the stack, as raw HTTP (the dev key holds every role)."""

    stack: Stack
    order_id: str

    async def send(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.stack.clients[service].request(method, path, **kwargs)

    async def burst(self, requests: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response]:
        """All at once; nothing may answer 5xx."""
        answers = list(await asyncio.gather(*requests))
        errors = [
            f"{r.request.method} {r.request.url}: {r.status_code}" for r in answers if r.status_code >= 500
        ]
        assert not errors, f"{len(errors)} of {len(answers)} answered 5xx: {errors[:5]}"
        return answers

    def task(self, amount: str, reason: str = "other", **fields: Any) -> Awaitable[httpx.Response]:
        body = {
            "order_id": self.order_id,
            "line_id": "L1",
            "reason": reason,
            "amount": amount,
            "payee": PAYEE,
        }
        return self.send("case-api", "POST", "/v1/cashback-tasks", json=body | fields)

    def claim(self, new_order_id: str) -> Awaitable[httpx.Response]:
        body = {
            "order_id": self.order_id,
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "price_protection",
            "reason": "price_drop",
            "new_order_id": new_order_id,
        }
        return self.send("case-api", "POST", "/v1/cases", json=body)

    def act(self, case_id: str, action: str, **fields: Any) -> Awaitable[httpx.Response]:
        return self.send("case-api", "POST", f"/v1/cases/{case_id}/actions/{action}", json=fields)

    def approve_task(self, task_id: str) -> Awaitable[httpx.Response]:
        return self.send("case-api", "POST", f"/v1/cashback-tasks/{task_id}/approve")

    async def ok(self, request: Awaitable[httpx.Response], status: int = 200) -> dict[str, Any]:
        response = await request
        assert response.status_code == status, (
            f"{response.request.url}: {response.status_code} {response.text}"
        )
        return dict(response.json())

    async def tasks(self, **params: str) -> list[dict[str, Any]]:
        page = await self.stack.call(
            "case-api",
            "GET",
            "/v1/cashback-tasks",
            params={"order_id": self.order_id, "limit": 200, **params},
        )
        assert page["next_cursor"] is None
        return list(page["items"])

    async def task_states(self) -> list[tuple[str, str, str, str | None]]:
        """Per cashback task of the order: its id, amount, status and failure code (for failure messages)."""
        return [(t["id"], t["amount"], t["status"], t["failure_code"]) for t in await self.tasks()]

    async def payout_states(self) -> list[tuple[str, str, str, str | None]]:
        """Per payout of the order: its task, amount, status and hold reason (for failure messages)."""
        return [
            (p["cashback_task_id"], p["amount"], p["status"], p["hold_reason"]) for p in await self.payouts()
        ]

    async def payouts(self, task: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"order_id": self.order_id, "limit": 200}
        if task is not None:
            params["cashback_task_id"] = task
        page = await self.stack.call("payout-worker", "GET", "/v1/payouts", params=params)
        assert page["next_cursor"] is None
        return list(page["items"])


async def approve_each(shop: Shop, requests: dict[str, Callable[[], Awaitable[httpx.Response]]]) -> None:
    """Each target (id → its approval) approved three times, all at once: one 200 each, the others 409."""
    targets = [target for target in requests for _ in range(3)]
    answers = await shop.burst(requests[target]() for target in targets)
    statuses: dict[str, list[int]] = {target: [] for target in requests}
    for target, answer in zip(targets, answers, strict=True):
        statuses[target].append(answer.status_code)
    assert all(sorted(s) == [200, 409, 409] for s in statuses.values()), statuses


async def test_the_transfers_of_an_order_never_exceed_what_was_paid(stack: Stack) -> None:
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    order_id, cheaper, cheapest = f"o-{tag}", f"o-{tag}-90", f"o-{tag}-80"
    shop = Shop(stack, order_id)
    shipment = {
        **order_body()["shipment"],
        "tracking_no": f"SF{tag}",
        "shipped_at": iso(now - timedelta(days=3)),
    }
    original = one_line(
        f"{LINE_PAID}",
        paid_at=iso(now - timedelta(days=4)),
        shipping_fee=f"{SHIPPING_FEE}",
        shipping_insurance=False,
        shipment=shipment,
        signed_at=iso(now - timedelta(days=1)),
    )
    await stack.call("case-api", "PUT", f"/v1/orders/{order_id}", json=original)
    for new_order_id, price in ((cheapest, "80.00"), (cheaper, "90.00")):
        new_order = one_line(price, paid_at=iso(now - timedelta(days=2)), shipment=None, signed_at=None)
        await stack.call("case-api", "PUT", f"/v1/orders/{new_order_id}", json=new_order)
    cap, postage, once = "R-COMP-CAP", "R-POSTAGE", "R-PRICE-PROTECT-ONCE"

    # 0. The line's full value twenty times at once, approved three times at once; ops cancels its payout,
    # which fails the task and gives the line back.
    answers = await shop.burst(shop.task(f"{LINE_PAID}") for _ in range(BURST))
    created = accepted(answers, 201, cap)
    assert len(created) == 1, f"{len(created)} tasks of 100.00 created at once on a 100.00 line: {created}"
    ops_cancelled = created[0]
    await approve_each(shop, {ops_cancelled["id"]: lambda: shop.approve_task(ops_cancelled["id"])})
    [payout] = await stack.until(
        "payout-worker to hear the approval of the 100.00 task",
        lambda: shop.payouts(task=ops_cancelled["id"]),
    )
    assert payout["status"] == "pending", payout
    await stack.call("payout-worker", "POST", f"/v1/payouts/{payout['id']}/cancel", json={"note": "e2e"})

    async def released() -> dict[str, Any] | None:
        task = await shop.ok(shop.send("case-api", "GET", f"/v1/cashback-tasks/{ops_cancelled['id']}"))
        return task if task["status"] == "failed" else None

    task = await stack.until(
        "case-api to hear that ops cancelled the payout", released, state=shop.task_states
    )
    assert task["failure_code"] == "CANCELLED_BY_OPS", task

    # 1. A case the storefront withdrew: tasks naming it must find it over.
    withdrawn = await shop.ok(
        shop.send(
            "case-api",
            "POST",
            "/v1/cases",
            json={
                "order_id": order_id,
                "lines": [{"line_id": "L1", "quantity": 1}],
                "remedy": "refund_only",
                "reason": "other",
                "amount": f"{LINE_PAID}",  # the whole line: the money came back, or this is refused
            },
        ),
        201,
    )
    withdrawn = await shop.ok(shop.act(withdrawn["id"], "withdraw"))
    assert withdrawn["status"] == "withdrawn", withdrawn

    # 2. One price drop, claimed and approved; then claimed again twenty times at once.
    protected = await shop.ok(shop.claim(cheapest), 201)
    assert protected["amount"] == "20.00", protected
    protected = await shop.ok(shop.act(protected["id"], "approve"))
    assert protected["status"] == "approved", protected
    answers = await shop.burst(shop.claim(cheapest) for _ in range(BURST))
    assert accepted(answers, 201, once) == []

    # 3. A claim approved and rejected right after: its cashback task is cancelled.
    revoked = await shop.ok(shop.claim(cheaper), 201)
    assert revoked["amount"] == "10.00", revoked
    await shop.ok(shop.act(revoked["id"], "approve"))
    revoked = await shop.ok(shop.act(revoked["id"], "reject", reason_code="price_not_lower"))
    assert revoked["status"] == "rejected", revoked
    [cancelled] = await shop.tasks(case_id=revoked["id"])
    assert cancelled["status"] == "cancelled", cancelled

    # 4. Every path at once, with 80.00 of the line and the whole fee free.
    plan: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "full_value": lambda: shop.task(f"{LINE_PAID}"),
        "rest_of_line": lambda: shop.task("80.00"),
        "withdrawn_case": lambda: shop.task(f"{LINE_PAID}", case_id=withdrawn["id"]),
        "postage_over_fee": lambda: shop.task("10.01", "shipping_fee"),
        "postage_far_over_fee": lambda: shop.task("999999.99", "shipping_fee"),
        "postage_unbounded": lambda: shop.task("9999999999.99", "shipping_fee"),
        "postage": lambda: shop.task("4.00", "shipping_fee"),
        "claim_same_drop": lambda: shop.claim(cheapest),
        "claim_freed_drop": lambda: shop.claim(cheaper),
    }
    kinds = [kind for _ in range(BURST) for kind in plan]
    answers = await shop.burst(plan[kind]() for kind in kinds)
    by_kind: dict[str, list[httpx.Response]] = {kind: [] for kind in plan}
    for kind, answer in zip(kinds, answers, strict=True):
        by_kind[kind].append(answer)
    assert accepted(by_kind["full_value"], 201, cap) == []  # 20.00 of it is promised to the first claim
    assert accepted(by_kind["withdrawn_case"], 201, "case_not_active") == []
    assert accepted(by_kind["postage_over_fee"] + by_kind["postage_far_over_fee"], 201, postage) == []
    assert accepted(by_kind["postage_unbounded"], 201, postage, "validation_failed") == []  # over any sum
    postage_tasks = accepted(by_kind["postage"], 201, postage)
    assert len(postage_tasks) == 2  # 8.00 of the 10.00 fee; a third would make 12.00
    assert accepted(by_kind["claim_same_drop"], 201, once, cap) == []
    # What is left of the line (80.00) goes to one 80.00 task or to one claim of the freed 10.00 drop.
    rest_tasks = accepted(by_kind["rest_of_line"], 201, cap)
    freed_claims = accepted(by_kind["claim_freed_drop"], 201, once, cap)
    assert len(rest_tasks) + len(freed_claims) == 1, (rest_tasks, freed_claims)

    def approve_task(task_id: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: shop.approve_task(task_id)

    def approve_case(case_id: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: shop.act(case_id, "approve")

    await approve_each(
        shop,
        {t["id"]: approve_task(t["id"]) for t in [*postage_tasks, *rest_tasks]}
        | {c["id"]: approve_case(c["id"]) for c in freed_claims},
    )
    answers = await shop.burst(shop.claim(new) for new in (cheapest, cheaper) for _ in range(BURST))
    assert accepted(answers, 201, once, cap) == []

    tasks = {t["id"]: t for t in await shop.tasks()}
    approved = {t for t, task in tasks.items() if task["status"] == "approved"}
    granted_cases = {protected["id"], *(c["id"] for c in freed_claims)}
    expected = {t["id"] for t in [*postage_tasks, *rest_tasks]} | {
        t for t, task in tasks.items() if task["case_id"] in granted_cases
    }
    assert approved == expected and len(approved) == 4, (approved, expected)
    promised = total(tasks[t] for t in approved)
    goods = total(tasks[t] for t in approved if tasks[t]["reason"] != "shipping_fee")
    assert goods <= LINE_PAID and promised - goods <= SHIPPING_FEE, tasks
    never_paid = {cancelled["id"], ops_cancelled["id"]}

    # payout-worker hears every approval, and the cancellation of the rejected claim's task, before any
    # flush (a cancellation after the transfer is a clawback for ops: the money has left by then).
    async def every_approval_heard() -> list[dict[str, Any]] | None:
        by_task = {p["cashback_task_id"]: p for p in await shop.payouts()}
        return list(by_task.values()) if set(by_task) == approved | never_paid else None

    await stack.until(
        f"payout-worker to hold a payout for each of {sorted(approved | never_paid)}",
        every_approval_heard,
        60,
        shop.payout_states,
    )

    async def cancellation_heard() -> list[dict[str, Any]] | None:
        mine = await shop.payouts(task=cancelled["id"])
        return mine if [p["status"] for p in mine] == ["cancelled"] else None

    await stack.until(
        f"payout-worker to cancel the payout of the cancelled task {cancelled['id']}",
        cancellation_heard,
        30,
        shop.payout_states,
    )

    # Ops pays now: flush, releasing anything a risk limit held, until every payout is final.
    async def all_final() -> list[dict[str, Any]] | None:
        payouts = await shop.payouts()
        if all(p["status"] in FINAL for p in payouts):
            return payouts
        for held in (p for p in payouts if p["status"] == "held_for_review"):
            path = f"/v1/payouts/{held['id']}/release"
            await stack.call("payout-worker", "POST", path, json={"note": "e2e: pay it, let the sum judge"})
        if any(p["status"] in ("pending", "held_for_review") for p in payouts):
            await stack.call("payout-worker", "POST", "/v1/batches/flush")
        return None

    await stack.call("payout-worker", "POST", "/v1/batches/flush")
    payouts = await stack.until("every payout of the order to be final", all_final, 60, shop.payout_states)

    async def results_back() -> dict[str, dict[str, Any]] | None:
        now = {t["id"]: t for t in await shop.tasks()}
        return now if all(now[t]["status"] in ("paid", "failed") for t in approved) else None

    tasks = await stack.until("every payout result to reach case-api", results_back, 60, shop.task_states)

    # The simulator's record is the judge.
    transfers = (await stack.call("payout-simulator", "GET", "/admin/transfers"))["transfers"]
    executed = [t for t in transfers if t["status"] == "SUCCESS"]
    of_payout = {p["out_biz_no"]: p for p in payouts}
    strangers = [t["out_biz_no"] for t in executed if t["out_biz_no"] not in of_payout]
    assert not strangers, f"transfers executed that are no payout of {order_id}: {strangers}"
    paid_tasks = [of_payout[t["out_biz_no"]]["cashback_task_id"] for t in executed]
    assert len(paid_tasks) == len(set(paid_tasks)), f"a task was paid twice: {executed}"
    sum_paid = total(executed)
    paid_goods = total(t for t in executed if of_payout[t["out_biz_no"]]["reason"] != "shipping_fee")
    assert sum_paid <= LINE_PAID + SHIPPING_FEE, f"{sum_paid} paid for an order of 110.00: {executed}"
    assert paid_goods <= LINE_PAID and sum_paid - paid_goods <= SHIPPING_FEE, (paid_goods, sum_paid)
    for task_id in never_paid:
        assert task_id not in paid_tasks, f"the cancelled task {task_id} was paid: {executed}"
        [payout] = [p for p in payouts if p["cashback_task_id"] == task_id]
        assert payout["status"] == "cancelled", payout
        assert payout["out_biz_no"] not in {t["out_biz_no"] for t in transfers}, "it was even sent"
    assert {t["payee_account"] for t in executed} == {PAYEE["alipay_account"]}
    stats = await stack.call("payout-simulator", "GET", "/admin/stats")
    assert stats["conflicts"] == 0, stats

    # Nothing failed, so all that was approved (and only that) was paid, once, and case-api agrees.
    assert sorted(paid_tasks) == sorted(approved), (paid_tasks, approved)
    assert sum_paid == promised
    assert {tasks[t]["status"] for t in approved} == {"paid"}
    assert (
        tasks[cancelled["id"]]["status"] == "cancelled"
        and not tasks[cancelled["id"]]["clawback_requested_at"]
    )
    assert tasks[ops_cancelled["id"]]["status"] == "failed"
    assert not stack.server_errors, stack.server_errors
