"""Who may call what (API.md): every case-api endpoint × role × own or another shop's data.

No key, an unknown or a revoked key → 401; a role the endpoint does not serve → 403; another shop's
order, case or cashback task → 404 (its existence does not leak); the allowed roles on their own shop's
data → 2xx. A refused write changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import pytest
from aftersales_shared.auth import ApiKey, Role, create_key
from aftersales_shared.db import unit_of_work
from case_api.domain.workflow import MOVES, Action
from case_api_checks import assert_problem, unchanged, upload
from case_api_testing import Api, image, order_body
from sqlmodel import select

SF = Role.storefront
WH = Role.warehouse
SU = Role.support
OPS = Role.ops
STOREFRONT_KEY = {"shop-a": "storefront", "shop-b": "storefront_b"}
_serial = itertools.count(1)

Ids = dict[str, Any]


# ---------------------------------------------------------------- building the state an endpoint needs


async def new_order(api: Api, shop: str, **changes: Any) -> str:
    order_id = f"ord-{next(_serial)}"
    response = await api.call(
        "PUT", f"/v1/orders/{order_id}", STOREFRONT_KEY[shop], json=order_body(shop_id=shop, **changes)
    )
    assert response.status_code == 201, response.text
    return order_id


async def open_case(api: Api, shop: str, order_id: str, **fields: Any) -> dict[str, Any]:
    body = {"order_id": order_id, "lines": [{"line_id": "L1", "quantity": 1}], **fields}
    response = await api.call("POST", "/v1/cases", "admin", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def step(api: Api, case: dict[str, Any], action: str, **body: Any) -> dict[str, Any]:
    response = await api.act(case, action, "admin", **body)
    assert response.status_code == 200, f"{action}: {response.text}"
    return dict(response.json())


async def order_only(api: Api, shop: str) -> Ids:
    return {"order": await new_order(api, shop)}


async def refund_case(api: Api, shop: str) -> dict[str, Any]:
    """Received goods, a refund-only compensation: no retention, no evidence → `open`."""
    order_id = await new_order(api, shop)
    return await open_case(api, shop, order_id, remedy="refund_only", reason="other", amount="10.00")


async def case_open(api: Api, shop: str) -> Ids:
    case = await refund_case(api, shop)
    return {"order": case["order_id"], "case": case["id"], "case_obj": case}


async def case_retention(api: Api, shop: str) -> Ids:
    order_id = await new_order(api, shop)
    case = await open_case(api, shop, order_id, remedy="return_refund", reason="no_reason")
    assert case["status"] == "retention"
    return {"order": order_id, "case": case["id"], "case_obj": case}


async def case_approved(api: Api, shop: str) -> Ids:
    case = await step(api, await refund_case(api, shop), "approve")
    return {"order": case["order_id"], "case": case["id"], "case_obj": case}


async def case_awaiting_return(api: Api, shop: str) -> Ids:
    ids = await case_retention(api, shop)
    case = await step(api, ids["case_obj"], "record_retention", offer="coupon", outcome="declined")
    case = await step(api, case, "approve")
    assert case["status"] == "awaiting_return"
    return {**ids, "case_obj": case}


async def case_exchange_approved(api: Api, shop: str) -> Ids:
    """An approved exchange, awaiting the buyer's parcel: its replacement may ship (R-EXCHANGE-7D)."""
    order_id = await new_order(api, shop)
    case = await open_case(api, shop, order_id, remedy="exchange", reason="no_reason")
    case = await step(api, case, "record_retention", offer="coupon", outcome="declined")
    case = await step(api, case, "approve")
    return {"order": order_id, "case": case["id"], "case_obj": case}


async def case_return_received(api: Api, shop: str) -> Ids:
    ids = await case_awaiting_return(api, shop)
    case = await step(api, ids["case_obj"], "record_receipt")
    return {**ids, "case_obj": case}


async def case_shipped_approved(api: Api, shop: str) -> Ids:
    """Shipped, not received, refund-only: retention declined, approved; ready for an intercept."""
    order_id = await new_order(api, shop, signed_at=None)
    case = await open_case(api, shop, order_id, remedy="refund_only", reason="other")
    case = await step(api, case, "record_retention", offer="gift", outcome="declined")
    case = await step(api, case, "approve")
    return {"order": order_id, "case": case["id"], "case_obj": case}


async def case_intercepting(api: Api, shop: str) -> Ids:
    ids = await case_shipped_approved(api, shop)
    case = await step(api, ids["case_obj"], "request_intercept")
    return {**ids, "case_obj": case}


async def case_awaiting_carrier(api: Api, shop: str) -> Ids:
    ids = await case_open(api, shop)
    case = await step(api, ids["case_obj"], "report_to_carrier")
    return {**ids, "case_obj": case}


async def case_reship_approved(api: Api, shop: str) -> Ids:
    order_id = await new_order(api, shop)
    photos = [await upload(api, image(next(_serial)), "admin") for _ in range(3)]
    case = await open_case(api, shop, order_id, remedy="reship", reason="damaged", evidence_ids=photos)
    case = await step(api, case, "approve")
    return {"order": order_id, "case": case["id"], "case_obj": case}


async def task_pending(api: Api, shop: str) -> Ids:
    order_id = await new_order(api, shop)
    response = await api.call("POST", "/v1/cashback-tasks", "admin", json=cashback_body(order_id))
    assert response.status_code == 201, response.text
    return {"order": order_id, "task": response.json()["id"]}


async def nothing(api: Api, shop: str) -> Ids:
    return {}


def cashback_body(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "line_id": "L1",
        "reason": "shipping_fee",
        "amount": "8.00",
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }


# ---------------------------------------------------------------- the table


Body = Callable[[Api, str, Ids], Awaitable[dict[str, Any] | None]]


async def no_body(api: Api, caller: str, ids: Ids) -> None:
    return None


def fixed(**body: Any) -> Body:
    async def make(api: Api, caller: str, ids: Ids) -> dict[str, Any]:
        return {"expected_version": ids["case_obj"]["version"], **body} if "case_obj" in ids else dict(body)

    return make


async def evidence_of_caller(api: Api, caller: str, ids: Ids) -> dict[str, Any]:
    """Evidence the caller uploaded itself (only the uploader, or support, may attach a file)."""
    uploader = (
        caller if caller in ("storefront", "storefront_b", "support", "support_b", "admin") else "admin"
    )
    return {
        "expected_version": ids["case_obj"]["version"],
        "evidence_ids": [await upload(api, image(next(_serial)), uploader)],
    }


async def new_case_body(api: Api, caller: str, ids: Ids) -> dict[str, Any]:
    return {
        "order_id": ids["order"],
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "refund_only",
        "reason": "other",
        "amount": "10.00",
    }


async def new_cashback_body(api: Api, caller: str, ids: Ids) -> dict[str, Any]:
    return cashback_body(ids["order"])


async def snapshot_of_callers_shop(api: Api, caller: str, ids: Ids) -> dict[str, Any]:
    """The order pushed again, naming the caller's own shop (so another shop's order is never "moved")."""
    return order_body(shop_id="shop-b" if caller.endswith("_b") else "shop-a")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # formatted with the ids the setup returns
    allowed: frozenset[Role]
    setup: Callable[[Api, str], Awaitable[Ids]] = nothing
    body: Body = no_body
    scoped: bool = True  # the path names one shop's order, case or task
    success: int = 200
    params: dict[str, str] = field(default_factory=dict)
    multipart: bool = False


def action(name: Action, setup: Callable[[Api, str], Awaitable[Ids]], body: Body | None = None) -> Endpoint:
    return Endpoint(
        f"action:{name}",
        "POST",
        "/v1/cases/{case}/actions/" + name,
        MOVES[name].roles,
        setup,
        body or fixed(),
    )


READ_ORDER = frozenset({SF, SU, OPS})
CASHBACK_READERS = frozenset({SU, OPS, SF})
REGISTER_READERS = frozenset({SU, OPS})

ENDPOINTS = [
    Endpoint("PUT order", "PUT", "/v1/orders/{order}", frozenset({SF}), order_only, snapshot_of_callers_shop),
    Endpoint("GET order", "GET", "/v1/orders/{order}", READ_ORDER, order_only),
    Endpoint("GET options", "GET", "/v1/orders/{order}/after-sales-options", frozenset({SF, SU}), order_only),
    Endpoint("POST case", "POST", "/v1/cases", frozenset({SF, SU}), order_only, new_case_body, success=201),
    Endpoint("GET cases", "GET", "/v1/cases", READ_ORDER, case_open, scoped=False),
    Endpoint("GET case", "GET", "/v1/cases/{case}", READ_ORDER, case_open),
    Endpoint("GET timeline", "GET", "/v1/cases/{case}/timeline", READ_ORDER, case_open),
    action(Action.record_retention, case_retention, fixed(offer="coupon", outcome="declined")),
    action(Action.approve, case_open),
    action(Action.reject, case_open, fixed(reason_code="not_eligible", message="抱歉")),
    action(Action.withdraw, case_open),
    action(Action.attach_evidence, case_open, evidence_of_caller),
    action(Action.submit_return_tracking, case_awaiting_return, fixed(carrier="YTO", tracking_no="YT1")),
    action(Action.record_receipt, case_awaiting_return),
    action(Action.record_inspection, case_return_received, fixed(passed=True, notes="吊牌完好")),
    action(Action.refund, case_approved),
    action(Action.request_intercept, case_shipped_approved),
    action(Action.confirm_intercept, case_intercepting),
    action(Action.report_to_carrier, case_open),
    action(Action.record_carrier_verdict, case_awaiting_carrier, fixed(confirmed=True)),
    action(Action.create_reship, case_reship_approved),
    action(
        Action.ship_replacement,
        case_exchange_approved,
        fixed(carrier="SF", tracking_no="SF9990001", shipped_at="2026-11-05T09:00:00+08:00"),
    ),
    action(Action.close, case_approved),
    Endpoint(
        "POST evidence",
        "POST",
        "/v1/evidence",
        frozenset({SF, SU}),
        scoped=False,
        success=201,
        multipart=True,
    ),
    Endpoint(
        "POST cashback",
        "POST",
        "/v1/cashback-tasks",
        frozenset({SU, SF}),
        order_only,
        new_cashback_body,
        success=201,
    ),
    Endpoint("GET cashback list", "GET", "/v1/cashback-tasks", CASHBACK_READERS, task_pending, scoped=False),
    Endpoint("GET cashback", "GET", "/v1/cashback-tasks/{task}", CASHBACK_READERS, task_pending),
    Endpoint("approve cashback", "POST", "/v1/cashback-tasks/{task}/approve", frozenset({SU}), task_pending),
    Endpoint(
        "reject cashback",
        "POST",
        "/v1/cashback-tasks/{task}/reject",
        frozenset({SU}),
        task_pending,
        fixed(reason="duplicate"),
    ),
    *[
        Endpoint(
            f"register {name} {fmt}",
            "GET",
            f"/v1/registers/{name}",
            REGISTER_READERS,
            case_open,
            scoped=False,
            params={"format": fmt},
        )
        for name in ("logistics-follow-up", "cashback", "retention", "inspections")
        for fmt in ("json", "csv")
    ],
]
assert {e.name for e in ENDPOINTS} >= {f"action:{a}" for a in Action}, "every action is in the matrix"

# (key, its roles, whose data it calls on); shop-a keys also call on shop-b's data.
ALL_ROLES = frozenset(Role)
OWN = [
    ("storefront", {SF}, "shop-a"),
    ("warehouse", {WH}, "shop-a"),
    ("support", {SU}, "shop-a"),
    ("ops", {OPS}, "shop-a"),
    ("admin", ALL_ROLES, "shop-a"),
]
OTHER = [
    ("storefront_b", {SF}, "shop-a"),
    ("support_b", {SU}, "shop-a"),
    ("storefront", {SF}, "shop-b"),
    ("warehouse", {WH}, "shop-b"),
    ("support", {SU}, "shop-b"),
    ("ops", {OPS}, "shop-b"),
]


def expected_status(endpoint: Endpoint, roles: AbstractSet[Role], own: bool) -> int:
    if not roles & endpoint.allowed:
        return 403
    if endpoint.scoped and not own:
        return 404  # existence must not leak
    return endpoint.success


async def prepare(api: Api, endpoint: Endpoint, caller: str, ids: Ids) -> dict[str, Any]:
    """The request's path and arguments; built before the call (it may upload a file)."""
    body = await endpoint.body(api, caller, ids)
    kwargs: dict[str, Any] = {"params": endpoint.params}
    if endpoint.multipart:
        kwargs["files"] = {"file": ("photo.jpg", image(next(_serial)), "image/jpeg")}
    elif body is not None:
        kwargs["json"] = body
    return {"method": endpoint.method, "path": endpoint.path.format(**ids), **kwargs}


def _ids(endpoint: Endpoint) -> str:
    return endpoint.name


class TestRolesAndShops:
    @pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_ids)
    async def test_each_role_on_its_own_and_another_shops_data(self, api: Api, endpoint: Endpoint) -> None:
        cells = [(key, roles, shop, True) for key, roles, shop in OWN]
        if endpoint.scoped:
            cells += [(key, roles, shop, False) for key, roles, shop in OTHER]
        else:
            cells += [(key, roles, "shop-a", True) for key, roles, _ in OTHER[:2]]
        wrong = []
        for key, roles, shop, own in cells:
            ids = await endpoint.setup(api, shop)  # fresh state per call: an allowed call changes it
            want = expected_status(endpoint, roles, own)
            request = await prepare(api, endpoint, key, ids)
            if want >= 400:
                async with unchanged(api):
                    response = await api.call(who=key, **request)
            else:
                response = await api.call(who=key, **request)
            if response.status_code != want:
                wrong.append(f"{key} on {shop}: {response.status_code} (want {want}) {response.text[:200]}")
            elif want >= 400:
                assert_problem(response, want, "forbidden" if want == 403 else "not_found")
        assert not wrong, "\n".join(wrong)


class TestAuthentication:
    @pytest.fixture
    async def revoked(self, api: Api) -> str:
        async with unit_of_work(api.app.state.sessions) as session:
            key, secret = await create_key(
                session, name="old", roles=list(Role), shops=None, now=api.clock.now()
            )
            key.revoked_at = api.clock.now()
        return secret

    @pytest.mark.parametrize("endpoint", ENDPOINTS, ids=_ids)
    async def test_missing_unknown_or_revoked_key_is_401(
        self, api: Api, endpoint: Endpoint, revoked: str
    ) -> None:
        ids = await endpoint.setup(api, "shop-a")
        request = await prepare(api, endpoint, "admin", ids)
        method, path = request.pop("method"), request.pop("path")
        for headers in (
            {},
            {"Authorization": "Bearer ask_not-a-key"},
            {"Authorization": f"Bearer {revoked}"},
            {"Authorization": f"Basic {api.keys.admin}"},
            {"Authorization": "Bearer "},
        ):
            async with unchanged(api):
                response = await api.client.request(method, path, headers=headers, **request)
            assert_problem(response, 401, "unauthenticated")

    async def test_revoked_key_is_stored_revoked(self, api: Api, revoked: str) -> None:
        async with api.app.state.sessions() as session:
            keys = (await session.exec(select(ApiKey).where(ApiKey.name == "old"))).all()
        assert [k.revoked_at is not None for k in keys] == [True]


class TestOrderUpsertAcrossShops:
    async def test_a_storefront_cannot_push_an_order_for_another_shop(self, api: Api) -> None:
        async with unchanged(api):
            response = await api.call(
                "PUT", "/v1/orders/o-x", "storefront_b", json=order_body(shop_id="shop-a")
            )
        assert_problem(response, 403, "forbidden")

    async def test_overwriting_another_shops_order_does_not_reveal_it(self, api: Api) -> None:
        order_id = await new_order(api, "shop-a")
        async with unchanged(api):
            response = await api.call(
                "PUT", f"/v1/orders/{order_id}", "storefront_b", json=order_body(shop_id="shop-b")
            )
        assert_problem(response, 404, "not_found")

    @pytest.mark.parametrize("who", ["warehouse", "support", "ops"])
    async def test_only_storefronts_push_orders(self, api: Api, who: str) -> None:
        async with unchanged(api):
            response = await api.call("PUT", "/v1/orders/o-x", who, json=order_body())
        assert_problem(response, 403, "forbidden")

    async def test_own_storefront_creates_then_replaces(self, api: Api) -> None:
        first = await api.call("PUT", "/v1/orders/o-x", "storefront", json=order_body())
        again = await api.call("PUT", "/v1/orders/o-x", "storefront", json=order_body())
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["version"] == first.json()["version"] + 1


class TestListsShowOnlyTheKeysShops:
    async def populate(self, api: Api) -> dict[str, set[str]]:
        by_shop: dict[str, dict[str, set[str]]] = {}
        for shop in ("shop-a", "shop-b", "shop-a", "shop-b"):
            ids = await case_open(api, shop)
            task = await task_pending(api, shop)
            case = await step(api, ids["case_obj"], "report_to_carrier")  # logistics follow-up entry
            retention = await case_retention(api, shop)
            await step(api, retention["case_obj"], "record_retention", offer="gift", outcome="accepted")
            entry = by_shop.setdefault(shop, {"cases": set(), "tasks": set(), "orders": set()})
            entry["cases"] |= {case["id"], retention["case"]}
            entry["tasks"].add(task["task"])
            entry["orders"] |= {ids["order"], task["order"], retention["order"]}
        return {f"{shop}:{kind}": ids for shop, kinds in by_shop.items() for kind, ids in kinds.items()}

    @pytest.mark.parametrize(
        ("who", "shop"),
        [
            ("storefront", "shop-a"),
            ("storefront_b", "shop-b"),
            ("support", "shop-a"),
            ("support_b", "shop-b"),
            ("ops", "shop-a"),
        ],
    )
    async def test_cases_cashback_tasks_and_registers(self, api: Api, who: str, shop: str) -> None:
        made = await self.populate(api)
        role_reads_registers = who.startswith(("support", "ops"))
        cases = await api.call("GET", "/v1/cases", who)
        assert {c["id"] for c in cases.json()["items"]} == made[f"{shop}:cases"]
        assert {c["shop_id"] for c in cases.json()["items"]} == {shop}
        tasks = await api.call("GET", "/v1/cashback-tasks", who)
        assert {t["id"] for t in tasks.json()["items"]} == made[f"{shop}:tasks"]
        other = "shop-b" if shop == "shop-a" else "shop-a"
        filtered = await api.call("GET", "/v1/cases", who, params={"shop_id": other})
        assert filtered.json()["items"] == []
        if role_reads_registers:
            for name in ("logistics-follow-up", "cashback", "retention"):
                rows = (await api.call("GET", f"/v1/registers/{name}", who)).json()["items"]
                assert rows, name
                assert {r["shop_id"] for r in rows} == {shop}, name
                csv = (await api.call("GET", f"/v1/registers/{name}", who, params={"format": "csv"})).text
                assert other not in csv, name

    async def test_admin_sees_every_shop(self, api: Api) -> None:
        made = await self.populate(api)
        cases = (await api.call("GET", "/v1/cases", "admin")).json()["items"]
        assert {c["id"] for c in cases} == made["shop-a:cases"] | made["shop-b:cases"]


class TestEvidenceStaysWithItsShop:
    async def test_another_shops_support_cannot_attach_a_file_uploaded_for_shop_a(self, api: Api) -> None:
        await api.put_order()
        await api.put_order("o-b", who="storefront_b", shop_id="shop-b")
        file_a = (
            await api.call(
                "POST", "/v1/evidence", "storefront", files={"file": ("a.jpg", image(7), "image/jpeg")}
            )
        ).json()["id"]
        refused = await api.call(
            "POST",
            "/v1/cases",
            "support_b",
            json={
                "order_id": "o-b",
                "lines": [{"line_id": "L1", "quantity": 1}],
                "remedy": "return_refund",
                "reason": "no_reason",
                "evidence_ids": [file_a],
            },
        )
        assert refused.status_code == 404
        assert (await api.call("GET", "/v1/cases", "admin")).json()["items"] == []

    async def test_support_attaches_a_file_the_shops_storefront_uploaded(self, api: Api) -> None:
        await api.put_order()
        file_a = (
            await api.call(
                "POST", "/v1/evidence", "storefront", files={"file": ("a.jpg", image(8), "image/jpeg")}
            )
        ).json()["id"]
        opened = await api.open_case("support", evidence_ids=[file_a])
        assert opened.status_code == 201, opened.text
