"""The HTTP API: roles, shops, bad input (4xx problem+json that changes nothing), filters and pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from logistics_watcher.models import Alert, Parcel, ScanRecord
from watcher_testing import Watcher, scan

H = timedelta(hours=1)
PROBLEM_JSON = "application/problem+json"


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"json": {"events": list(events)}}


async def unchanged(watcher: Watcher) -> None:
    assert (await watcher.count(Parcel), await watcher.count(ScanRecord), await watcher.count(Alert)) == (
        0,
        0,
        0,
    )
    assert await watcher.published() == []


class TestRoles:
    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("POST", "/v1/tracking-events", {"warehouse", "admin"}),
            ("GET", "/v1/parcels/SF1000001", {"warehouse", "support", "ops", "admin"}),
            ("GET", "/v1/alerts", {"support", "ops", "admin"}),
            ("POST", "/v1/scans/run", {"ops", "admin"}),
        ],
    )
    async def test_who_may_do_what(self, watcher: Watcher, method: str, path: str, allowed: set[str]) -> None:
        await watcher.send(scan("in_transit", -1 * H))
        for who in ("storefront", "warehouse", "support", "ops", "admin"):
            kwargs = (
                batch(scan("out_for_delivery", -0.5 * H)) if method == "POST" and "tracking" in path else {}
            )
            response = await watcher.call(method, path, who, **kwargs)
            expected = (
                {"POST": 202 if "tracking" in path else 200, "GET": 200}[method] if who in allowed else 403
            )
            assert response.status_code == expected, (who, response.text)
            if expected == 403:
                assert response.headers["content-type"] == PROBLEM_JSON

    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
    async def test_no_valid_key_is_401(self, watcher: Watcher, headers: dict[str, str]) -> None:
        response = await watcher.client.post(
            "/v1/tracking-events", headers=headers, json={"events": [scan()]}
        )
        assert (response.status_code, response.headers["content-type"]) == (401, PROBLEM_JSON)
        await unchanged(watcher)


class TestShops:
    async def test_a_shop_key_writes_only_its_shops_parcels(self, watcher: Watcher) -> None:
        result = await watcher.send(
            scan(tracking_no="A1"),
            scan(tracking_no="B1", shop_id="shop-b"),
            scan(tracking_no="N1", shop_id=None),  # a key for one shop: that shop
        )
        assert result["accepted"] == 2
        assert [(r["index"], r["errors"][0]["field"]) for r in result["rejected"]] == [(1, "shop_id")]
        assert (await watcher.parcel("N1"))["shop_id"] == "shop-a"

    async def test_a_shop_key_may_leave_out_the_shop_of_a_parcel_it_owns(self, watcher: Watcher) -> None:
        await watcher.send(scan("in_transit", -2 * H))
        assert (await watcher.send(scan("delivered", -1 * H, shop_id=None)))["accepted"] == 1

    async def test_parcels_of_other_shops_are_not_found(self, watcher: Watcher) -> None:
        await watcher.send(
            scan(tracking_no="B1", shop_id="shop-b"), scan(tracking_no="N1", shop_id=None), who="admin"
        )
        for tracking_no in ("B1", "N1", "NOPE1"):
            response = await watcher.call("GET", f"/v1/parcels/{tracking_no}", "support")
            assert (response.status_code, response.headers["content-type"]) == (404, PROBLEM_JSON)
        assert (await watcher.parcel("B1", who="admin"))["shop_id"] == "shop-b"

    async def test_alerts_are_listed_for_the_keys_shops(self, watcher: Watcher) -> None:
        await watcher.send(
            scan("in_transit", -30 * H, tracking_no="A1"),
            scan("in_transit", -30 * H, tracking_no="B1", shop_id="shop-b"),
            who="admin",
        )
        await watcher.detect()
        assert [a["tracking_no"] for a in await watcher.alerts("support")] == ["A1"]
        assert [a["tracking_no"] for a in await watcher.alerts("support_b")] == ["B1"]
        assert {a["tracking_no"] for a in await watcher.alerts("admin")} == {"A1", "B1"}


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "status"),
        [
            (b"{not json", 400),
            (b'{"events": "SF1"}', 422),
            (b'{"events": []}', 422),
            (b"[]", 422),
            (b"{}", 422),
        ],
    )
    async def test_a_malformed_batch(self, watcher: Watcher, body: bytes, status: int) -> None:
        response = await watcher.call(
            "POST",
            "/v1/tracking-events",
            "warehouse",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM_JSON)
        assert response.json()["code"] in ("malformed_json", "validation_failed")
        await unchanged(watcher)

    async def test_more_than_a_thousand_events(self, watcher: Watcher) -> None:
        response = await watcher.call(
            "POST",
            "/v1/tracking-events",
            "warehouse",
            **batch(*[scan(tracking_no=f"T{i}") for i in range(1001)]),
        )
        assert response.status_code == 422
        await unchanged(watcher)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"status": "teleported"}, "status"),
            ({"occurred_at": "2026-11-05T10:00:00"}, "occurred_at"),  # no offset
            ({"occurred_at": "yesterday"}, "occurred_at"),
            ({"tracking_no": ""}, "tracking_no"),
            ({"tracking_no": "SF/1"}, "tracking_no"),
            ({"event_id": None}, "event_id"),
            ({"signed_by": "neighbour"}, "signed_by"),
            ({"direction": "sideways"}, "direction"),
            ({"status": None}, "event"),
            ({"occurred_at": "2026-11-05T12:00:00+08:00"}, "occurred_at"),  # two hours ahead of the clock
        ],
    )
    async def test_an_invalid_event_alone_is_refused_and_changes_nothing(
        self, watcher: Watcher, change: dict[str, Any], field: str
    ) -> None:
        response = await watcher.call(
            "POST", "/v1/tracking-events", "warehouse", **batch({**scan(), **change})
        )
        assert (response.status_code, response.headers["content-type"]) == (422, PROBLEM_JSON), response.text
        [rejection] = response.json()["rejected"]
        assert rejection["index"] == 0 and rejection["errors"][0]["field"] == field
        await unchanged(watcher)

    async def test_a_non_object_event_is_rejected_by_index(self, watcher: Watcher) -> None:
        response = await watcher.call("POST", "/v1/tracking-events", "warehouse", **batch(scan(), "SF1", 7))
        assert response.status_code == 202
        assert (response.json()["accepted"], [r["index"] for r in response.json()["rejected"]]) == (1, [1, 2])

    async def test_bad_query_parameters(self, watcher: Watcher) -> None:
        for params in (
            {"kind": "late"},
            {"status": "closed"},
            {"limit": 0},
            {"limit": 201},
            {"cursor": "____"},
        ):
            response = await watcher.call("GET", "/v1/alerts", "support", params=params)
            assert response.status_code in (400, 422), params
            assert response.headers["content-type"] == PROBLEM_JSON


class TestIdempotency:
    async def test_a_replayed_batch_gets_the_first_answer(self, watcher: Watcher) -> None:
        body = batch(scan("in_transit", -1 * H))
        key = {"Idempotency-Key": "wh-batch-1"}
        first = await watcher.call("POST", "/v1/tracking-events", "warehouse", headers=key, **body)
        again = await watcher.call("POST", "/v1/tracking-events", "warehouse", headers=key, **body)
        assert first.json() == again.json() == {"accepted": 1, "duplicates": [], "rejected": []}
        assert again.headers["Idempotent-Replayed"] == "true"
        other = await watcher.call(
            "POST", "/v1/tracking-events", "warehouse", headers=key, **batch(scan("delivered"))
        )
        assert other.status_code == 409


class TestReading:
    async def test_a_parcel_with_its_history_and_open_alerts(self, watcher: Watcher) -> None:
        await watcher.send(scan("picked_up", -40 * H, location="杭州"), scan("in_transit", -30 * H))
        await watcher.detect()
        parcel = await watcher.parcel(who="warehouse")
        assert (parcel["status"], parcel["carrier"], parcel["order_id"]) == ("in_transit", "SF", "o-1")
        assert [h["status"] for h in parcel["history"]] == ["picked_up", "in_transit"]
        assert parcel["history"][0]["location"] == "杭州"
        assert [a["kind"] for a in parcel["open_alerts"]] == ["stalled"]

    async def test_alerts_filtered_and_paged(self, watcher: Watcher) -> None:
        await watcher.send(
            *[scan("in_transit", -30 * H, tracking_no=f"SF{i}") for i in range(5)],
            scan("in_transit", -30 * H, tracking_no="YT1", carrier="YTO"),
            scan("exception", -1 * H, tracking_no="YT2", carrier="YTO"),
        )
        await watcher.detect()
        assert len(await watcher.alerts()) == 7
        assert [a["tracking_no"] for a in await watcher.alerts(carrier="YTO", kind="stalled")] == ["YT1"]
        assert [a["tracking_no"] for a in await watcher.alerts(kind="suspected_lost")] == ["YT2"]
        assert [a["kind"] for a in await watcher.alerts(tracking_no="SF3")] == ["stalled"]
        assert await watcher.alerts(status="resolved") == []
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await watcher.call("GET", "/v1/alerts", "ops", params=params)).json()
            seen += [a["id"] for a in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert len(seen) == len(set(seen)) == 7
        assert seen == sorted(seen, reverse=True)  # newest first

    async def test_a_scan_run_reports_counts(self, watcher: Watcher) -> None:
        await watcher.send(scan("in_transit", -30 * H))
        response = (await watcher.call("POST", "/v1/scans/run", "ops")).json()
        assert response["opened"]["stalled"] == 1 and response["open"]["stalled"] == 1
        response = (await watcher.call("POST", "/v1/scans/run", "ops")).json()
        assert response["opened"]["stalled"] == 0 and response["open"]["stalled"] == 1

    async def test_the_openapi_document_describes_the_events(self, watcher: Watcher) -> None:
        spec = (await watcher.client.get("/openapi.json")).json()
        body = spec["components"]["schemas"]["TrackingBatchIn"]["properties"]["events"]
        assert body["maxItems"] == 1000 and "carrier_status" in body["items"]["properties"]


class TestMetrics:
    async def test_open_alerts_by_kind(self, watcher: Watcher) -> None:
        await watcher.send(scan("in_transit", timedelta(0)), scan("created", timedelta(0), tracking_no="YT2"))
        await watcher.detect(after=timedelta(hours=25))
        metrics = await watcher.metrics()
        assert metrics.value("aftersales_open_alerts_by_kind", kind="stalled") == 1
        assert metrics.value("aftersales_open_alerts_by_kind", kind="no_first_scan") == 1
        assert metrics.value("aftersales_open_alerts_by_kind", kind="suspected_lost") == 0
        await watcher.send(scan("delivered", watcher.clock.now(), signed_by="recipient"))
        metrics = await watcher.metrics()
        assert metrics.value("aftersales_open_alerts_by_kind", kind="stalled") == 0
