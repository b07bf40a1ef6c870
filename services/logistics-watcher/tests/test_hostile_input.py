"""Inputs that answered 5xx (issue 11, item 5) answer 4xx problem+json and change nothing, on SQLite and
PostgreSQL: scan times that overflow when converted to UTC, NUL characters (PostgreSQL text cannot hold
them), tracking numbers no event could carry, and bodies of any size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.pagination import encode_cursor
from logistics_watcher.models import Alert, Parcel, ScanRecord
from watcher_testing import Watcher, running_watcher, scan

H = timedelta(hours=1)
PROBLEM_JSON = "application/problem+json"
OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]


async def stored(w: Watcher) -> tuple[int, int, int, int]:
    return (
        await w.count(Parcel),
        await w.count(ScanRecord),
        await w.count(Alert),
        len(await w.published("")),
    )


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def rejected_fields(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["index"], e["field"]) for r in body["rejected"] for e in r["errors"]]


class TestScanTimes:
    async def test_a_time_that_overflows_in_utc_is_rejected_and_nothing_stored(
        self, any_db_watcher: Watcher
    ) -> None:
        for at in OVERFLOWING:
            response = await any_db_watcher.call(
                "POST", "/v1/tracking-events", "warehouse", json={"events": [{**scan(), "occurred_at": at}]}
            )
            assert rejected_fields(problem(response, 422, "validation_failed")) == [(0, "occurred_at")]
        assert await stored(any_db_watcher) == (0, 0, 0, 0)

    async def test_in_a_batch_only_that_event_is_rejected(self, any_db_watcher: Watcher) -> None:
        result = await any_db_watcher.send(
            scan("in_transit", -2 * H), {**scan(), "occurred_at": OVERFLOWING[1]}
        )
        assert (result["accepted"], rejected_fields(result)) == (1, [(1, "occurred_at")])
        assert await any_db_watcher.count(ScanRecord) == 1


class TestNulCharacters:
    @pytest.mark.parametrize(
        "field", ["description", "location", "carrier", "event_id", "order_id", "warehouse_id"]
    )
    async def test_a_nul_in_a_scan_is_rejected_naming_the_field(
        self, any_db_watcher: Watcher, field: str
    ) -> None:
        event = {**scan("in_transit", -1 * H, description="快件已发车", location="杭州"), field: "a\x00b"}
        response = await any_db_watcher.call(
            "POST", "/v1/tracking-events", "warehouse", json={"events": [event]}
        )
        assert rejected_fields(problem(response, 422, "validation_failed")) == [(0, field)]
        assert await stored(any_db_watcher) == (0, 0, 0, 0)

    async def test_a_nul_in_an_ignored_field_is_refused_too(self, any_db_watcher: Watcher) -> None:
        event = {**scan("in_transit", -1 * H), "extra\x00": "x"}
        response = await any_db_watcher.call(
            "POST", "/v1/tracking-events", "warehouse", json={"events": [event]}
        )
        assert rejected_fields(problem(response, 422, "validation_failed")) == [(0, "extra\\u0000")]

    async def test_a_cursor_that_is_no_id_is_400(self, any_db_watcher: Watcher) -> None:
        for last_id in ("\x00", "a" * 65):
            response = await any_db_watcher.call(
                "GET", "/v1/alerts", "support", params={"cursor": encode_cursor(last_id)}
            )
            problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize("name", ["carrier", "tracking_no", "order_id"])
    async def test_a_nul_in_an_alert_filter_is_422(self, any_db_watcher: Watcher, name: str) -> None:
        response = await any_db_watcher.call("GET", "/v1/alerts", "support", params={name: "SF\x001"})
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == f"query.{name}"


class TestTrackingNumbersInPaths:
    @pytest.mark.parametrize("tracking_no", ["S" * 65, "S" * 5000, "SF%00", "%00", "SF😀1", "-SF1", "SF 1"])
    async def test_one_no_event_could_carry_is_422(self, any_db_watcher: Watcher, tracking_no: str) -> None:
        response = await any_db_watcher.call("GET", f"/v1/parcels/{tracking_no}", "support")
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "path.tracking_no"

    async def test_an_unknown_one_that_could_exist_is_404(self, any_db_watcher: Watcher) -> None:
        problem(await any_db_watcher.call("GET", "/v1/parcels/" + "S" * 64, "support"), 404, "not_found")


@pytest.fixture
async def small_limit(tmp_path: Path) -> AsyncIterator[Watcher]:
    async with running_watcher(tmp_path, max_body_bytes=4096) as watcher:
        yield watcher


class TestBodyLimit:
    async def test_a_body_over_the_limit_is_413_and_nothing_stored(self, small_limit: Watcher) -> None:
        await small_limit.send(scan("in_transit", -2 * H))  # an ordinary batch is well within it
        events = [scan("in_transit", -1 * H, tracking_no=f"SF{n}", description="路" * 400) for n in range(5)]
        before = await stored(small_limit)
        response = await small_limit.call("POST", "/v1/tracking-events", "warehouse", json={"events": events})
        assert problem(response, 413, "body_too_large")["limit"] == 4096
        assert await stored(small_limit) == before

    async def test_a_streamed_body_is_cut_off_after_the_limit(self, small_limit: Watcher) -> None:
        pulled = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal pulled
            yield b'{"events": ["'
            for _ in range(200 * 1024):
                pulled += 1024
                yield b"a" * 1024

        response = await small_limit.call(
            "POST",
            "/v1/tracking-events",
            "warehouse",
            content=endless(),
            headers={"Content-Type": "application/json"},
        )
        problem(response, 413, "body_too_large")
        assert pulled <= 4096 + 1024
        assert await stored(small_limit) == (0, 0, 0, 0)
