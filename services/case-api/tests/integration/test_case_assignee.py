"""PUT /v1/cases/{id}/assignee (the console's "take a case") and GET /v1/cases?assignee=: who may take,
release and assign, the timeline and the change feed, and two people taking one case at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aftersales_shared.auth import Role, create_key
from aftersales_shared.db import unit_of_work
from case_api_checks import assert_problem
from case_api_testing import Api


async def opened(api: Api, order_id: str = "o-1") -> dict[str, Any]:
    await api.put_order(order_id)
    response = await api.open_case(order_id=order_id)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def second_support_key(api: Api, name: str = "support_2") -> dict[str, str]:
    """Another support person of shop-a: the Authorization header of a key named `name`."""
    async with unit_of_work(api.app.state.sessions) as session:
        _, secret = await create_key(
            session, name=name, roles=[Role.support], shops=["shop-a"], now=api.clock.now()
        )
    return {"Authorization": f"Bearer {secret}"}


async def assign(
    api: Api, case: dict[str, Any], assignee: str | None, who: str = "support", **extra: Any
) -> httpx.Response:
    headers = extra.pop("headers", {})
    return await api.call(
        "PUT", f"/v1/cases/{case['id']}/assignee", who, json={"assignee": assignee, **extra}, headers=headers
    )


async def read(api: Api, case: dict[str, Any]) -> dict[str, Any]:
    return dict((await api.call("GET", f"/v1/cases/{case['id']}", "support")).json())


async def listed(api: Api, **query: str) -> list[str]:
    response = await api.call("GET", "/v1/cases", "support", params=query)
    assert response.status_code == 200, response.text
    return sorted(case["id"] for case in response.json()["items"])


class TestTakeAndRelease:
    async def test_support_takes_a_case_and_the_timeline_names_them(self, api: Api) -> None:
        case = await opened(api)
        assert case["assignee"] is None
        api.clock.advance(seconds=60)
        response = await assign(api, case, "support", expected_version=case["version"])
        assert response.status_code == 200, response.text
        taken = response.json()
        assert (taken["assignee"], taken["version"]) == ("support", case["version"] + 1)
        assert taken["updated_at"] > case["updated_at"]  # the change feed carries it
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        entry = timeline[-1]
        assert (entry["action"], entry["actor"]) == ("assigned", "support")
        assert entry["data"] == {"assignee": "support", "previous_assignee": None}
        assert entry["from_status"] == entry["to_status"] == case["status"]

    async def test_taking_it_again_changes_nothing(self, api: Api) -> None:
        case = await opened(api)
        first = (await assign(api, case, "support")).json()
        again = await assign(api, case, "support")
        assert again.status_code == 200
        assert again.json()["version"] == first["version"]

    async def test_support_releases_their_own_case(self, api: Api) -> None:
        case = await opened(api)
        taken = (await assign(api, case, "support")).json()
        released = await api.call(
            "PUT",
            f"/v1/cases/{case['id']}/assignee",
            "support",
            json={"assignee": None},
            headers={"If-Match": str(taken["version"])},
        )
        assert released.status_code == 200, released.text
        assert released.json()["assignee"] is None

    async def test_an_action_after_taking_needs_the_new_version(self, api: Api) -> None:
        case = await opened(api)
        await assign(api, case, "support")
        stale = await api.act(case, "record_retention", offer="coupon", outcome="declined")
        assert_problem(stale, 409, "stale_version")


class TestWhoMay:
    async def test_support_cannot_assign_someone_else(self, api: Api) -> None:
        case = await opened(api)
        body = assert_problem(await assign(api, case, "staff:bob"), 403, "forbidden")
        assert body["message_zh"] and body["message_en"]
        assert (await read(api, case))["assignee"] is None

    async def test_support_cannot_take_or_release_a_case_taken_by_another(self, api: Api) -> None:
        case = await opened(api)
        other = await second_support_key(api)
        assert (await assign(api, case, "support_2", headers=other)).status_code == 200
        body = assert_problem(await assign(api, case, "support"), 409, "already_assigned")
        assert body["assignee"] == "support_2"
        assert body["message_zh"] and body["message_en"]
        assert_problem(await assign(api, case, None), 409, "already_assigned")
        assert (await read(api, case))["assignee"] == "support_2"

    async def test_ops_assigns_anyone_and_reassigns(self, api: Api) -> None:
        case = await opened(api)
        assert (await assign(api, case, "staff:alice", "ops")).json()["assignee"] == "staff:alice"
        moved = await assign(api, case, "staff:bob", "ops")
        assert moved.json()["assignee"] == "staff:bob"
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "ops")).json()
        assert timeline[-1]["data"] == {"assignee": "staff:bob", "previous_assignee": "staff:alice"}
        assert timeline[-1]["actor"] == "ops"

    @pytest.mark.parametrize("who", ["storefront", "warehouse"])
    async def test_other_roles_are_refused(self, api: Api, who: str) -> None:
        case = await opened(api)
        assert_problem(await assign(api, case, who, who), 403, "forbidden")
        assert (await read(api, case))["assignee"] is None

    async def test_another_shops_case_is_not_found(self, api: Api) -> None:
        case = await opened(api)
        assert_problem(await assign(api, case, "support_b", "support_b"), 404, "not_found")
        assert (await read(api, case))["assignee"] is None


class TestBadInput:
    @pytest.mark.parametrize("assignee", ["", " alice", "alice\n", "a\x00b", "x" * 129, 7])
    async def test_a_bad_assignee_is_422_and_changes_nothing(self, api: Api, assignee: Any) -> None:
        case = await opened(api)
        assert_problem(await assign(api, case, assignee, "ops"), 422)
        assert (await read(api, case))["version"] == case["version"]

    async def test_the_assignee_field_is_required(self, api: Api) -> None:
        case = await opened(api)
        response = await api.call("PUT", f"/v1/cases/{case['id']}/assignee", "ops", json={})
        assert_problem(response, 422, "validation_failed")

    async def test_a_stale_version_is_409_and_changes_nothing(self, api: Api) -> None:
        case = await opened(api)
        await assign(api, case, "staff:alice", "ops")
        stale = await assign(api, case, "staff:bob", "ops", expected_version=case["version"])
        assert_problem(stale, 409, "stale_version")
        assert (await read(api, case))["assignee"] == "staff:alice"

    async def test_an_unknown_case_is_404(self, api: Api) -> None:
        assert_problem(await assign(api, {"id": "case_missing"}, "support"), 404, "not_found")


class TestListFilter:
    async def test_lists_by_assignee_and_the_unassigned(self, any_db_api: Api) -> None:
        api = any_db_api
        mine = await opened(api, "o-1")
        theirs = await opened(api, "o-2")
        free = await opened(api, "o-3")
        await assign(api, mine, "support")
        await assign(api, theirs, "staff:alice", "ops")
        assert await listed(api, assignee="support") == [mine["id"]]
        assert await listed(api, assignee="staff:alice") == [theirs["id"]]
        assert await listed(api, assignee="none") == [free["id"]]
        assert await listed(api, assignee="staff:nobody") == []
        assert await listed(api, assignee="none", status=free["status"]) == [free["id"]]

    @pytest.mark.parametrize("assignee", ["", "a\x00b", "x" * 129])
    async def test_a_bad_filter_is_422(self, api: Api, assignee: str) -> None:
        response = await api.call("GET", "/v1/cases", "support", params={"assignee": assignee})
        assert_problem(response, 422, "validation_failed")

    async def test_the_change_feed_carries_an_assignment(self, api: Api) -> None:
        case = await opened(api)
        api.clock.advance(seconds=3600)
        since = api.clock.now().isoformat()
        api.clock.advance(seconds=60)
        await assign(api, case, "support")
        api.clock.advance(seconds=3600)
        feed = await api.call("GET", "/v1/cases", "support", params={"updated_after": since})
        assert feed.status_code == 200, feed.text
        assert [(c["id"], c["assignee"]) for c in feed.json()["items"]] == [(case["id"], "support")]


class TestTwoPeopleAtOnce:
    async def test_one_takes_it_and_the_other_gets_409(self, any_db_api: Api) -> None:
        """The case row is locked: the first to take it wins; the second finds it taken (on PostgreSQL two
        transactions really wait on each other's row lock)."""
        api = any_db_api
        case = await opened(api)
        other = await second_support_key(api)
        for _ in range(3):
            first, second = await asyncio.gather(
                assign(api, case, "support"), assign(api, case, "support_2", headers=other)
            )
            codes = sorted([first.status_code, second.status_code])
            assert codes == [200, 409], (first.text, second.text)
            winner, loser = (first, second) if first.status_code == 200 else (second, first)
            assert_problem(loser, 409, "already_assigned")
            now = await read(api, case)
            assert now["assignee"] == winner.json()["assignee"]
            timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
            assert [e for e in timeline if e["action"] == "assigned"][-1]["data"]["assignee"] == now[
                "assignee"
            ]
            headers = other if now["assignee"] == "support_2" else {}
            release = await assign(api, case, None, headers=headers)
            assert release.status_code == 200, release.text
