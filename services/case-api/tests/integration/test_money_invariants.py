"""Money invariants by construction (issue 10): every grant reserves in the compensation ledger under the
order's lock, so that on SQLite and on PostgreSQL, however many requests arrive at once,

- a line is never promised more than was paid for it (R-COMP-CAP), an order never more postage than its
  shipping fee (R-POSTAGE), and a new order backs one price difference per line (R-PRICE-PROTECT-ONCE);
- nothing answers 5xx, and every refusal is a 422 `policy_refused` naming its rule.

Then one regression test per defect 2-7 of the issue, and the refund guards that must name their rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aftersales_shared import topics
from aftersales_shared.events import CashbackCancelled, CloudEvent
from aftersales_shared.signing import ApprovalVerifier
from case_api_checks import assert_problem, outbox_rows, unchanged
from case_api_testing import (
    PAYEE,
    Api,
    Money,
    deliver_payout,
    one_line_order,
    outbox_events,
    read_money,
)

PAID = Decimal("100.00")  # the one line L1 of o-1
BURST = 50
CANCELLED = "aftersales.cashback.cancelled.v1"
UNSHIPPED: dict[str, Any] = {"shipment": None, "signed_at": None}
SHIPPED: dict[str, Any] = {"signed_at": None}


# ---------------------------------------------------------------- helpers


async def burst(requests: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Send the requests at once; none may answer 5xx."""
    answers = list(await asyncio.gather(*requests))
    errors = [(r.status_code, r.text[:300]) for r in answers if r.status_code >= 500]
    assert not errors, f"{len(errors)} of {len(answers)} answered 5xx: {errors[:3]}"
    return answers


def refused_with(response: httpx.Response, *rules: str) -> dict[str, Any]:
    """A 422 `policy_refused` naming one of `rules`, with courteous messages in Chinese and English."""
    problem = assert_problem(response, 422, "policy_refused")
    assert problem["rule"] in rules, problem
    assert problem["message_zh"] and problem["message_en"], problem
    return problem


def split(answers: list[httpx.Response], ok: int, *rules: str) -> list[dict[str, Any]]:
    """The accepted answers (status `ok`); every other answer is a refusal naming one of `rules`."""
    accepted = [dict(r.json()) for r in answers if r.status_code == ok]
    for r in answers:
        if r.status_code != ok:
            refused_with(r, *rules)
    return accepted


def total(items: Iterable[dict[str, Any]], field: str = "amount") -> Decimal:
    return sum((Decimal(item[field]) for item in items), Decimal("0.00"))


async def checked_money(api: Api) -> Money:
    """The ledger, with the invariants of issue 10 asserted."""
    money = await read_money(api)
    money.check()
    return money


async def open_ok(api: Api, who: str = "storefront", **fields: Any) -> dict[str, Any]:
    response = await api.open_case(who, **fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def move(
    api: Api, case: dict[str, Any], action: str, who: str = "support", **body: Any
) -> dict[str, Any]:
    response = await api.act(case, action, who, **body)
    assert response.status_code == 200, f"{action}: {response.text}"
    return dict(response.json())


def task_body(amount: str, reason: str = "other", **changes: Any) -> dict[str, Any]:
    return {
        "order_id": "o-1",
        "line_id": "L1",
        "reason": reason,
        "amount": amount,
        "payee": PAYEE,
        **changes,
    }


async def create_task(api: Api, amount: str, reason: str = "other", **changes: Any) -> httpx.Response:
    return await api.call("POST", "/v1/cashback-tasks", "support", json=task_body(amount, reason, **changes))


async def task_ok(api: Api, amount: str, reason: str = "other", **changes: Any) -> dict[str, Any]:
    response = await create_task(api, amount, reason, **changes)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def decide(api: Api, task: dict[str, Any], decision: str = "approve") -> httpx.Response:
    return await api.call("POST", f"/v1/cashback-tasks/{task['id']}/{decision}", "support")


async def read_task(api: Api, task_id: str) -> dict[str, Any]:
    response = await api.call("GET", f"/v1/cashback-tasks/{task_id}", "support")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def read_case(api: Api, case_id: str) -> dict[str, Any]:
    response = await api.call("GET", f"/v1/cases/{case_id}", "support")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def tasks_of_case(api: Api, case_id: str) -> list[dict[str, Any]]:
    response = await api.call("GET", "/v1/cashback-tasks", "support", params={"case_id": case_id})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


class NothingCreated:
    """`async with nothing_created(api):` the block changes no counted row (cases, tasks, events...) and
    not the ledger."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.rows = unchanged(api)
        self.before: Money | None = None

    async def __aenter__(self) -> NothingCreated:
        await self.rows.__aenter__()
        self.before = await read_money(self.api)
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        await self.rows.__aexit__(exc_type, *rest)
        if exc_type is None:
            after = await read_money(self.api)
            assert self.before is not None and after.entries == self.before.entries, "the ledger changed"


def nothing_created(api: Api) -> NothingCreated:
    return NothingCreated(api)


async def price_protection_orders(api: Api, *originals: str) -> None:
    """`originals` at 100.00 a unit, signed for; o-2 a new order of the same buyer for the same SKU at
    80.00, placed within the 7 days (R-PRICE-PROTECT): a difference of 20.00 per unit."""
    for order_id in originals:
        await api.put_order(order_id, **one_line_order())
    await api.put_order("o-2", **one_line_order("80.00", paid_at="2026-11-04T20:00:00+08:00", **UNSHIPPED))


def claim(order_id: str = "o-1", new_order_id: str = "o-2") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "price_protection",
        "reason": "price_drop",
        "new_order_id": new_order_id,
    }


def refund_only(amount: str | None = None, order_id: str = "o-1", reason: str = "other") -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id,
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "refund_only",
        "reason": reason,
    }
    if amount is not None:
        body["amount"] = amount
    return body


async def approved_refund_only(api: Api, amount: str) -> dict[str, Any]:
    """A refund-only case on the unshipped o-1, through retention (declined) to approved."""
    case = await open_ok(api, **refund_only(amount))
    case = await move(api, case, "record_retention", offer="coupon", outcome="declined")
    return await move(api, case, "approve")


# ---------------------------------------------------------------- bursts: 50 requests at once on one line


class TestCaseCreationBurst:
    """Defect 1: 30 parallel refund-only cases used to be created on one 100.00 line."""

    @pytest.mark.parametrize(("amount", "fits"), [(None, 1), ("30.00", 3)], ids=["whole-line", "30.00"])
    async def test_refund_only_cases_on_an_unshipped_line(
        self, any_db_api: Api, amount: str | None, fits: int
    ) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(**UNSHIPPED))
        answers = await burst(
            api.call("POST", "/v1/cases", "storefront", json=refund_only(amount)) for _ in range(BURST)
        )
        created = split(answers, 201, "R-COMP-CAP")
        assert len(created) == fits
        assert total(created) <= PAID
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1", status="reserved") == total(created)
        assert {e.case_id for e in money.entries if e.held} == {c["id"] for c in created}


class TestCashbackCreationBurst:
    async def test_full_value_tasks_on_one_line_create_exactly_one(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        answers = await burst(create_task(api, "100.00") for _ in range(BURST))
        (created,) = split(answers, 201, "R-COMP-CAP")
        assert created["status"] == "pending_verification"
        money = await checked_money(api)
        assert [(e.cashback_task_id, e.amount, e.status) for e in money.entries if e.held] == [
            (created["id"], PAID, "reserved")
        ]

    async def test_shipping_fee_tasks_stay_within_the_shipping_fee(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(shipping_fee="10.00"))
        answers = await burst(create_task(api, "4.00", "shipping_fee") for _ in range(BURST))
        created = split(answers, 201, "R-POSTAGE")
        assert len(created) == 2  # 8.00 of 10.00; a third would be 12.00
        money = await checked_money(api)
        assert money.held("o-1", bucket="postage") == Decimal("8.00")
        assert money.held("o-1") == Decimal("0.00")  # postage takes nothing from the goods


class TestApprovalBurst:
    async def test_pending_tasks_approved_at_once(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        tasks = [await task_ok(api, "2.00") for _ in range(BURST)]  # 100.00 reserved in all
        answers = await burst(decide(api, task) for task in tasks)
        approved = split(answers, 200)  # the reservation already holds the money: no re-check refuses
        assert len(approved) == BURST and {t["status"] for t in approved} == {"approved"}
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == PAID
        assert len(await outbox_events(api, "aftersales.cashback.approved.v1")) == BURST

    async def test_each_task_approved_twice_at_once_is_approved_once(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        tasks = [await task_ok(api, "4.00") for _ in range(BURST // 2)]
        answers = await burst(decide(api, task) for task in tasks for _ in range(2))
        for first, second in zip(answers[::2], answers[1::2], strict=True):
            assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == total(tasks)
        assert len(await outbox_events(api, "aftersales.cashback.approved.v1")) == len(tasks)

    async def test_approvals_racing_new_tasks_keep_the_cap(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        pending = [await task_ok(api, "2.00") for _ in range(BURST // 2)]  # 50.00 reserved
        approvals = [decide(api, task) for task in pending]
        creations = [create_task(api, "4.00") for _ in range(BURST // 2)]
        answers = await burst([*approvals, *creations])
        assert {r.status_code for r in answers[: len(pending)]} == {200}
        created = split(answers[len(pending) :], 201, "R-COMP-CAP")
        assert len(created) == 12  # 48.00 of the 50.00 left
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == Decimal("98.00")


class TestRefundBurst:
    async def test_approved_cases_refunded_at_once_twice_each(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(**UNSHIPPED))
        cases = [await approved_refund_only(api, "4.00") for _ in range(BURST // 2)]  # 100.00
        answers = await burst(api.act(case, "refund") for case in cases for _ in range(2))
        for first, second in zip(answers[::2], answers[1::2], strict=True):
            assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1", status="granted") == PAID
        assert money.held("o-1", line_id="L1", status="reserved") == Decimal("0.00")
        for case in cases:
            assert (await read_case(api, case["id"]))["status"] == "refunded"


class TestPriceProtectionBurst:
    async def test_claims_naming_one_new_order_create_exactly_one(self, any_db_api: Api) -> None:
        api = any_db_api
        await price_protection_orders(api, "o-1")
        answers = await burst(api.call("POST", "/v1/cases", "storefront", json=claim()) for _ in range(BURST))
        (created,) = split(answers, 201, "R-PRICE-PROTECT-ONCE")
        assert created["amount"] == "20.00"
        money = await checked_money(api)
        (entry,) = [e for e in money.entries if e.held]
        assert (entry.case_id, entry.new_order_id, entry.new_line_id, entry.amount) == (
            created["id"],
            "o-2",
            "L1",
            Decimal("20.00"),
        )

    async def test_two_orders_claiming_one_new_order_line_create_one(self, any_db_api: Api) -> None:
        """Each claim locks two orders (its own and the new one): no deadlock, no second claim."""
        api = any_db_api
        await price_protection_orders(api, "o-1", "o-3")
        answers = await burst(
            api.call("POST", "/v1/cases", "storefront", json=claim(order_id))
            for _ in range(BURST // 2)
            for order_id in ("o-1", "o-3")
        )
        assert len(split(answers, 201, "R-PRICE-PROTECT-ONCE")) == 1
        await checked_money(api)


class TestMixedBurst:
    async def test_every_grant_path_at_once_on_one_line(self, any_db_api: Api) -> None:
        api = any_db_api
        await price_protection_orders(api, "o-1")  # o-1 received, shipping fee 10.00, no 运费险
        pending = await task_ok(api, "10.00")
        approved = await open_ok(api, **refund_only("10.00"))  # R-RO-RECEIVED: an agreed amount
        approved = await move(api, approved, "approve")
        assert approved["status"] == "approved", approved
        cashback_case = {**refund_only("30.00"), "remedy": "cashback"}
        send: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "refund_only": lambda: api.call("POST", "/v1/cases", "storefront", json=refund_only("30.00")),
            "cashback_case": lambda: api.call("POST", "/v1/cases", "support", json=cashback_case),
            "price_protection": lambda: api.call("POST", "/v1/cases", "storefront", json=claim()),
            "cashback_task": lambda: create_task(api, "30.00"),
            "shipping_fee_task": lambda: create_task(api, "4.00", "shipping_fee"),
        }
        plan = [kind for _ in range(9) for kind in send]
        plan[10:10] = ["approve"]
        plan[30:30] = ["refund"]
        send["approve"] = lambda: decide(api, pending)
        send["refund"] = lambda: api.act(approved, "refund")
        answers = await burst(send[kind]() for kind in plan)
        by_kind: dict[str, list[httpx.Response]] = {kind: [] for kind in send}
        for kind, answer in zip(plan, answers, strict=True):
            by_kind[kind].append(answer)

        assert [r.status_code for r in by_kind["approve"] + by_kind["refund"]] == [200, 200]
        goods = [
            *split(by_kind["refund_only"], 201, "R-COMP-CAP"),
            *split(by_kind["cashback_case"], 201, "R-COMP-CAP"),
            *split(by_kind["cashback_task"], 201, "R-COMP-CAP"),
        ]
        claims = split(by_kind["price_protection"], 201, "R-COMP-CAP", "R-PRICE-PROTECT-ONCE")
        postage = split(by_kind["shipping_fee_task"], 201, "R-POSTAGE")
        # 80.00 were free: whatever the order, two 30.00 asks and the one 20.00 difference fill it.
        assert (len(goods), len(claims), len(postage)) == (2, 1, 2)
        promised = Decimal("20.00") + total(goods) + total(claims)  # + 10.00 pending, 10.00 refunded
        assert promised == PAID

        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == promised
        assert money.held("o-1", line_id="L1", status="granted") == Decimal("10.00")
        assert money.held("o-1", bucket="postage") == Decimal("8.00")


# ---------------------------------------------------------------- regressions: defects 2-7


class TestCaseLinkedCashback:
    """Defect 2: a cashback task naming a case used to escape the cap."""

    @pytest.mark.parametrize("ending", ["withdrawn", "rejected", "retained", "closed"])
    async def test_a_task_for_a_case_that_is_over_is_409(self, any_db_api: Api, ending: str) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(**UNSHIPPED))
        case = await open_ok(api, **refund_only())
        assert case["status"] == "retention"
        if ending == "withdrawn":
            case = await move(api, case, "withdraw", "storefront")
        elif ending == "rejected":
            case = await move(api, case, "reject", reason_code="not_eligible")
        elif ending == "retained":
            case = await move(api, case, "record_retention", offer="gift", outcome="accepted")
        else:
            case = await move(api, case, "record_retention", offer="coupon", outcome="declined")
            case = await move(api, case, "approve")
            case = await move(api, case, "close", notes="the buyer kept the goods after all")
        assert case["status"] == ending
        money = await checked_money(api)
        assert money.of_case(case["id"]), "the case reserved its refund when it was opened"
        assert [e for e in money.of_case(case["id"]) if e.held] == [], f"a {ending} case holds nothing"
        for _ in range(5):
            async with nothing_created(api):
                response = await create_task(api, "100.00", case_id=case["id"])
            assert_problem(response, 409, "case_not_active")

    async def test_linked_tasks_reserve_beside_their_case(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        case = await open_ok(api, **refund_only("50.00"))  # R-RO-RECEIVED: an agreed 50.00
        answers = [await create_task(api, "50.00", case_id=case["id"]) for _ in range(3)]
        (task,) = split(answers, 201, "R-COMP-CAP")
        assert (await decide(api, task)).status_code == 200
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == PAID
        assert sum((e.amount for e in money.of_task(task["id"]) if e.held), Decimal(0)) == Decimal("50.00")

    async def test_linked_tasks_created_at_once_keep_the_cap(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        case = await open_ok(api, **refund_only("50.00"))
        answers = await burst(create_task(api, "50.00", case_id=case["id"]) for _ in range(BURST))
        assert len(split(answers, 201, "R-COMP-CAP")) == 1
        await checked_money(api)


class TestPostage:
    """Defect 3: shipping-fee cashback was unbounded, and owed even with 运费险."""

    async def test_a_task_over_the_shipping_fee_is_refused(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(shipping_fee="10.00"))
        async with nothing_created(api):
            huge = await create_task(api, "9999999999.99", "shipping_fee")  # the amount of defect 3
        if assert_problem(huge, 422)["code"] != "validation_failed":  # over any amount accepted at all
            refused_with(huge, "R-POSTAGE")
        for amount in ("999999.99", "10.01"):
            async with nothing_created(api):
                refused_with(await create_task(api, amount, "shipping_fee"), "R-POSTAGE")
        await task_ok(api, "10.00", "shipping_fee")
        async with nothing_created(api):
            refused_with(await create_task(api, "0.10", "shipping_fee"), "R-POSTAGE")
        money = await checked_money(api)
        assert money.held("o-1", bucket="postage") == Decimal("10.00")

    async def test_postage_reserved_by_a_case_counts(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(shipping_fee="10.00"))
        await open_ok(api, **refund_only("6.00", reason="shipping_fee"))
        async with nothing_created(api):
            refused_with(await create_task(api, "4.01", "shipping_fee"), "R-POSTAGE")
        await task_ok(api, "4.00", "shipping_fee")
        assert (await checked_money(api)).held("o-1", bucket="postage") == Decimal("10.00")

    async def test_no_postage_is_owed_with_shipping_insurance(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(shipping_fee="10.00", shipping_insurance=True))
        async with nothing_created(api):
            refused_with(await create_task(api, "5.00", "shipping_fee"), "R-POSTAGE")


class TestPriceProtectOnce:
    """Defect 4: one price drop was paid many times."""

    async def test_a_second_claim_naming_the_same_new_order_is_refused(self, any_db_api: Api) -> None:
        api = any_db_api
        await price_protection_orders(api, "o-1")
        first = await open_ok(api, **claim())
        assert first["amount"] == "20.00"
        async with nothing_created(api):
            refused_with(await api.open_case(**claim()), "R-PRICE-PROTECT-ONCE")
        await move(api, first, "approve")  # the claim, now a cashback task, still holds the new order
        async with nothing_created(api):
            refused_with(await api.open_case("support", **claim()), "R-PRICE-PROTECT-ONCE")
        await checked_money(api)


class TestRejectionCancelsCashback:
    """Defect 5: an approved price-protection case rejected afterwards still had its cashback paid."""

    @pytest.mark.parametrize(("action", "who"), [("reject", "support"), ("withdraw", "storefront")])
    async def test_the_approved_task_is_cancelled_and_its_money_released(
        self, any_db_api: Api, action: str, who: str
    ) -> None:
        api = any_db_api
        await price_protection_orders(api, "o-1")
        case = await move(api, await open_ok(api, **claim()), "approve")
        (task,) = await tasks_of_case(api, case["id"])
        assert task["status"] == "approved"
        body = {"reason_code": "price_not_lower"} if action == "reject" else {}
        await move(api, case, action, who, **body)
        assert (await read_task(api, task["id"]))["status"] == "cancelled"
        (event,) = await outbox_events(api, CANCELLED)
        assert event.data["cashback_task_id"] == task["id"] and event.data["order_id"] == "o-1"
        # signed with the approval key: payout-worker cancels a payout only on what case-api signed
        verifier = ApprovalVerifier([api.app.state.approval_signer.key.public_key()])
        assert verifier.problem(CashbackCancelled.model_validate(event.data)) is None
        # on the cashback topic, keyed by the task like its approval, so payout-worker reads them in order
        rows = await outbox_rows(api, topics.CASHBACK)
        assert [r.key for r in rows if CloudEvent.from_bytes(r.payload).type == CANCELLED] == [task["id"]]
        money = await checked_money(api)
        assert [e for e in money.of_case(case["id"]) + money.of_task(task["id"]) if e.held] == []
        assert money.goods_headroom("o-1", "L1") == PAID
        await open_ok(api, **claim())  # the new order is free to back a claim again

    async def test_a_pending_linked_task_is_cancelled_with_its_case(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        case = await open_ok(api, **refund_only("30.00"))
        task = await task_ok(api, "20.00", case_id=case["id"])
        await move(api, case, "withdraw", "storefront")
        assert (await read_task(api, task["id"]))["status"] == "cancelled"
        assert_problem(await decide(api, task), 409)
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1") == Decimal("0.00")


class TestPayeeLimitsAndFailedPayouts:
    """Defect 6: a payee payout-worker cannot take was accepted, and the task stayed approved forever."""

    @pytest.mark.parametrize("field", ["name", "alipay_account"])
    async def test_a_payee_field_over_100_characters_is_refused(self, any_db_api: Api, field: str) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        long_payee = {**PAYEE, field: "张" * 101 if field == "name" else "a" * 89 + "@example.com"}
        async with nothing_created(api):
            response = await create_task(api, "10.00", payee=long_payee)
        problem = assert_problem(response, 422, "validation_failed")
        assert any(field in e["field"] for e in problem["errors"]), problem
        await task_ok(api, "10.00", payee={**PAYEE, field: long_payee[field][:100]})

    async def test_a_failed_payout_releases_the_task_and_the_allowance_returns(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        task = await task_ok(api, "100.00")
        assert (await decide(api, task)).status_code == 200
        await deliver_payout(api, task, "failed", failure_code="PAYEE_NOT_EXIST")
        now = await read_task(api, task["id"])
        assert (now["status"], now["failure_code"]) == ("failed", "PAYEE_NOT_EXIST")
        money = await checked_money(api)
        assert money.of_task(task["id"]) and {e.status for e in money.of_task(task["id"])} == {"released"}
        await task_ok(api, "100.00")

    async def test_a_paid_payout_grants_the_task(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        task = await task_ok(api, "100.00")
        assert (await decide(api, task)).status_code == 200
        await deliver_payout(api, task, "paid")
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1", status="granted") == PAID
        refused_with(await create_task(api, "0.10"), "R-COMP-CAP")


class TestLostParcel:
    """Defect 7: a lost parcel was reshipped before the carrier confirmed the loss (R-LOST)."""

    async def test_no_approval_before_the_carrier_confirms(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(**SHIPPED))
        case = await open_ok(
            api, lines=[{"line_id": "L1", "quantity": 1}], remedy="reship", reason="lost", description="丢件"
        )
        assert case["status"] == "open"
        async with nothing_created(api):
            refused_with(await api.act(case, "approve"), "R-LOST")
        case = await move(api, case, "report_to_carrier", notes="物流三天无更新")
        case = await move(api, case, "record_carrier_verdict", confirmed=False, verdict="还在转运中")
        async with nothing_created(api):
            refused_with(await api.act(case, "approve"), "R-LOST")
        case = await move(api, case, "report_to_carrier")
        case = await move(api, case, "record_carrier_verdict", confirmed=True, verdict="确认丢失")
        case = await move(api, case, "approve")
        case = await move(api, case, "create_reship")
        assert case["status"] == "reshipped"
        money = await checked_money(api)
        assert [(e.kind, e.amount, e.status) for e in money.of_case(case["id"]) if e.held] == [
            ("reship", PAID, "granted")
        ]


class TestCloseReleasesTheUnspentPart:
    async def test_a_partial_refund_then_close_keeps_only_what_was_refunded(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        case = await open_ok(api, **refund_only("50.00"))  # R-RO-RECEIVED: an agreed 50.00
        case = await move(api, await move(api, case, "approve"), "refund", amount="30.00")
        await move(api, case, "close")
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1", status="granted") == Decimal("30.00")
        assert money.held("o-1", line_id="L1", status="reserved") == Decimal("0.00")
        await task_ok(api, "70.00")  # the 20.00 never refunded is free again


class TestRefundGuardsNameTheirRule:
    """Refusals keep the contract: a refund too early is a 422 naming its rule, not a bare 409."""

    async def test_refund_before_the_intercept_is_confirmed(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order(**SHIPPED))
        case = await open_ok(api, **refund_only())
        assert (case["status"], case["stage"]) == ("retention", "shipped")
        case = await move(api, case, "record_retention", offer="coupon", outcome="declined")
        case = await move(api, case, "approve")
        async with nothing_created(api):
            refused_with(await api.act(case, "refund"), "R-RO-SHIPPED")
        case = await move(api, case, "request_intercept")
        case = await move(api, case, "confirm_intercept", "warehouse")
        case = await move(api, case, "refund")
        money = await checked_money(api)
        assert money.held("o-1", line_id="L1", status="granted") == PAID

    async def test_refund_of_a_return_before_inspection(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order(**one_line_order())
        case = await open_ok(api)  # return_refund, no_reason, received two days ago
        case = await move(api, case, "record_retention", offer="coupon", outcome="declined")
        case = await move(api, case, "approve")
        case = await move(api, case, "submit_return_tracking", "storefront", carrier="YTO", tracking_no="YT1")
        case = await move(api, case, "record_receipt", "warehouse")
        async with nothing_created(api):
            refused_with(await api.act(case, "refund"), "R-RESALEABLE")
        case = await move(api, case, "record_inspection", "warehouse", passed=True, notes="吊牌完好")
        case = await move(api, case, "refund")
        assert case["status"] == "refunded"
        assert (await checked_money(api)).held("o-1", line_id="L1", status="granted") == PAID
