"""GET /v1/cases?carrier=: the cases whose order a carrier shipped (the console's queue filters by it), on
SQLite and PostgreSQL (the carrier is read from the order snapshot's JSON)."""

from __future__ import annotations

from typing import Any

from case_api_checks import assert_problem
from case_api_testing import Api, order_body


async def case_of(api: Api, order_id: str, carrier: str | None) -> dict[str, Any]:
    shipment = None if carrier is None else {**order_body()["shipment"], "carrier": carrier}
    await api.put_order(order_id, shipment=shipment)
    response = await api.open_case(order_id=order_id)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def listed(api: Api, who: str = "support", **query: str) -> list[str]:
    response = await api.call("GET", "/v1/cases", who, params=query)
    assert response.status_code == 200, response.text
    return sorted(case["id"] for case in response.json()["items"])


class TestCarrierFilter:
    async def test_lists_the_cases_of_orders_the_carrier_shipped(self, any_db_api: Api) -> None:
        api = any_db_api
        sf = await case_of(api, "o-sf", "SF")
        sf_too = await case_of(api, "o-sf-2", "SF")
        yto = await case_of(api, "o-yto", "YTO")
        await api.put_order("o-unshipped", shipment=None, signed_at=None)
        assert await listed(api, carrier="SF") == sorted([sf["id"], sf_too["id"]])
        assert await listed(api, carrier="YTO") == [yto["id"]]
        assert await listed(api, carrier="ZTO") == []
        assert await listed(api, carrier="sf") == []  # carriers are codes: compared exactly
        assert await listed(api) == sorted([sf["id"], sf_too["id"], yto["id"]])
        assert await listed(api, carrier="SF", status=sf["status"], order_id="o-sf-2") == [sf_too["id"]]

    async def test_a_key_of_another_shop_sees_none_of_them(self, any_db_api: Api) -> None:
        await case_of(any_db_api, "o-sf", "SF")
        assert await listed(any_db_api, "support_b", carrier="SF") == []

    async def test_an_empty_or_nul_carrier_is_refused(self, api: Api) -> None:
        for carrier in ("", "S\x00F", "x" * 500):
            response = await api.call("GET", "/v1/cases", "support", params={"carrier": carrier})
            assert_problem(response, 422, "validation_failed")
