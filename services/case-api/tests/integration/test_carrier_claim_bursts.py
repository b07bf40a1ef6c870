"""Carrier claims (R-CARRIER-CLAIM) under 50 requests at once, on PostgreSQL: one claim per logistics
follow-up entry, accepted at most once for at most what was claimed, paid at most once for at most what was
accepted, one of an accept and a refuse naming the same version, and nothing from another shop's key or a
key without the role. Every step holds the order's lock, then the case's, then the claim's row."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from case_api.models import CarrierClaim, CaseEvent
from case_api_checks import assert_problem, unchanged
from case_api_testing import Api
from sqlmodel import col, select

pytestmark = pytest.mark.postgres
BURST = 50
SF = {"carrier": "顺丰速运", "tracking_no": "SF1000001", "shipped_at": "2026-11-02T09:00:00+08:00"}
CLAIMED = Decimal("131.00")  # the lost T-shirt (119.00) and the postage (12.00)


async def burst(requests: Iterable[Any]) -> list[httpx.Response]:
    """Send the requests at once; none may answer 5xx."""
    answers: list[httpx.Response] = list(await asyncio.gather(*requests))
    errors = [(r.status_code, r.text[:300]) for r in answers if r.status_code >= 500]
    assert not errors, f"{len(errors)} of {len(answers)} answered 5xx: {errors[:3]}"
    return answers


async def reported_case(api: Api) -> dict[str, Any]:
    """A lost parcel's case, reported to the carrier: its logistics follow-up entry exists."""
    await api.put_order(signed_at=None, shipment=SF)
    opened = await api.open_case(remedy="reship", reason="lost", description="物流一周没动")
    assert opened.status_code == 201, opened.text
    reported = await api.act(opened.json(), "report_to_carrier")
    assert reported.status_code == 200, reported.text
    return dict(reported.json())


def book(api: Api, case: dict[str, Any], who: str = "support") -> Any:
    return api.call("POST", f"/v1/cases/{case['id']}/carrier-claim", who, json={"postage_amount": "12.00"})


def decide(
    api: Api,
    claim: dict[str, Any],
    action: str,
    who: str = "support",
    if_match: int | None = None,
    **body: Any,
) -> Any:
    headers = {} if if_match is None else {"If-Match": f'"{if_match}"'}
    return api.call("POST", f"/v1/carrier-claims/{claim['id']}/{action}", who, json=body, headers=headers)


async def booked(api: Api) -> dict[str, Any]:
    response = await book(api, await reported_case(api))
    assert response.status_code == 201, response.text
    claim = dict(response.json())
    assert Decimal(claim["claimed_amount"]) == CLAIMED
    return claim


async def stored(api: Api) -> tuple[list[CarrierClaim], list[str]]:
    """The claims as stored, and the case timeline's claim notes, oldest first."""
    async with api.app.state.sessions() as session:
        claims = (await session.exec(select(CarrierClaim))).all()
        notes = (
            await session.exec(
                select(CaseEvent.action)
                .where(col(CaseEvent.action).startswith("carrier_claim_"))
                .order_by(col(CaseEvent.at), col(CaseEvent.id))
            )
        ).all()
    return list(claims), list(notes)


def one_winner(answers: list[httpx.Response]) -> dict[str, Any]:
    (won,) = [r for r in answers if r.status_code == 200]
    return dict(won.json())


def refused_above(response: httpx.Response, ceiling: Decimal, amount: Decimal) -> bool:
    """A 422 of R-CARRIER-CLAIM for an amount above the ceiling."""
    problem = assert_problem(response, 422, "policy_refused")
    assert problem["rule"] == "R-CARRIER-CLAIM" and Decimal(problem["ceiling"]) == ceiling, problem
    return amount > ceiling


class TestBooking:
    async def test_one_follow_up_entry_books_one_claim(self, pg_api: Api) -> None:
        api = pg_api
        case = await reported_case(api)
        answers = await burst(book(api, case, "support" if i % 2 else "ops") for i in range(BURST))
        (created,) = [r for r in answers if r.status_code == 201]
        for refused in (r for r in answers if r is not created):
            assert assert_problem(refused, 409, "claim_exists")["carrier_claim_id"] == created.json()["id"]
        claims, notes = await stored(api)
        assert [c.id for c in claims] == [created.json()["id"]]
        assert notes == ["carrier_claim_booked"]


class TestDecisions:
    async def test_accepts_of_varied_amounts_accept_one_within_the_claim(self, pg_api: Api) -> None:
        api = pg_api
        claim = await booked(api)
        amounts = [Decimal(3 * i) for i in range(1, BURST + 1)]  # 3.00 to 150.00: some above 131.00
        answers = await burst(decide(api, claim, "accept", amount=f"{a:.2f}") for a in amounts)
        won = one_winner(answers)
        assert won["status"] == "accepted" and Decimal(won["accepted_amount"]) <= CLAIMED
        for amount, answer in zip(amounts, answers, strict=True):
            if answer.status_code == 422:
                assert refused_above(answer, CLAIMED, amount)
            elif answer.status_code != 200:
                assert_problem(answer, 409, "invalid_transition")
        (row,), notes = await stored(api)
        assert (row.status, row.accepted_amount, row.version) == (
            "accepted",
            Decimal(won["accepted_amount"]),
            2,
        )
        assert notes == ["carrier_claim_booked", "carrier_claim_accepted"]

    async def test_pays_of_varied_amounts_pay_once_within_the_acceptance(self, pg_api: Api) -> None:
        api = pg_api
        claim = await booked(api)
        accepted = await decide(api, claim, "accept", amount="100.00")
        assert accepted.status_code == 200, accepted.text
        amounts = [Decimal(5 * i) / 2 for i in range(1, BURST + 1)]  # 2.50 to 125.00: some above 100.00
        answers = await burst(decide(api, claim, "pay", amount=f"{a:.2f}") for a in amounts)
        won = one_winner(answers)
        assert won["status"] == "paid" and Decimal(won["paid_amount"]) <= Decimal("100.00")
        for amount, answer in zip(amounts, answers, strict=True):
            if answer.status_code == 422:
                assert refused_above(answer, Decimal("100.00"), amount)
            elif answer.status_code != 200:
                assert_problem(answer, 409, "invalid_transition")
        (row,), notes = await stored(api)
        assert (row.status, row.paid_amount, row.accepted_amount) == (
            "paid",
            Decimal(won["paid_amount"]),
            Decimal("100.00"),
        )
        assert notes == ["carrier_claim_booked", "carrier_claim_accepted", "carrier_claim_paid"]

    async def test_accepts_racing_refusals_of_one_version_let_one_win(self, pg_api: Api) -> None:
        """Each request names the version its sender saw (in the body or as If-Match): the first one under
        the claim's lock moves it, every other is stale."""
        api = pg_api
        claim = await booked(api)
        seen = claim["version"]
        requests = [
            decide(api, claim, "accept", amount="100.00", expected_version=seen)
            if i % 2
            else decide(api, claim, "refuse", if_match=seen, reason="签收后丢失不赔")
            for i in range(BURST)
        ]
        answers = await burst(requests)
        won = one_winner(answers)
        for answer in (r for r in answers if r.status_code != 200):
            assert_problem(answer, 409, "stale_version")
        (row,), notes = await stored(api)
        assert (row.status, row.version) == (won["status"], seen + 1)
        assert notes == ["carrier_claim_booked", f"carrier_claim_{won['status']}"]


class TestOtherKeys:
    async def test_another_shops_key_and_a_key_without_the_role_change_nothing(self, pg_api: Api) -> None:
        api = pg_api
        claim = await booked(api)
        case = {"id": claim["case_id"]}
        kinds = (
            lambda who: book(api, case, who),
            lambda who: decide(api, claim, "accept", who, amount="100.00"),
            lambda who: decide(api, claim, "refuse", who, reason="拒赔"),
            lambda who: decide(api, claim, "pay", who, amount="1.00"),
        )
        requests = [
            (kinds[i % len(kinds)](who), status)
            for who, status in (("support_b", 404), ("storefront", 403))
            for i in range(BURST // 2)
        ]
        before = await stored(api)
        async with unchanged(api):
            answers = await burst(request for request, _ in requests)
        for answer, (_, status) in zip(answers, requests, strict=True):
            assert_problem(answer, status, "not_found" if status == 404 else "forbidden")
        after = await stored(api)
        assert [(c.status, c.version, c.accepted_amount) for c in after[0]] == [("claimed", 1, None)]
        assert after[1] == before[1]
