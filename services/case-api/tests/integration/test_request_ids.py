"""X-Request-ID on case-api: a refusal remembered under an Idempotency-Key names its request as `instance`,
and its replay answers the same body; a change's log line carries the request's id."""

from __future__ import annotations

import json
import logging

import pytest
from aftersales_shared.logging import JsonFormatter
from case_api_testing import Api


class TestRequestIds:
    async def test_a_remembered_refusal_names_its_request_and_replays_as_it_was(self, api: Api) -> None:
        await api.put_order()
        body = {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 99}],
            "remedy": "return_refund",
            "reason": "no_reason",
        }
        first = await api.call(
            "POST",
            "/v1/cases",
            "storefront",
            json=body,
            headers={"Idempotency-Key": "k1", "X-Request-ID": "r-1"},
        )
        assert first.status_code == 422 and first.json()["instance"] == "urn:request:r-1"
        again = await api.call(
            "POST",
            "/v1/cases",
            "storefront",
            json=body,
            headers={"Idempotency-Key": "k1", "X-Request-ID": "r-2"},
        )
        assert again.headers["x-request-id"] == "r-2" and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()

    async def test_a_changes_log_line_carries_the_request_id(
        self, api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        await api.put_order()
        response = await api.call(
            "POST",
            "/v1/cases",
            "storefront",
            json={
                "order_id": "o-1",
                "lines": [{"line_id": "L1", "quantity": 1}],
                "remedy": "return_refund",
                "reason": "no_reason",
            },
            headers={"X-Request-ID": "open-1"},
        )
        assert response.status_code == 201, response.text
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
        opened = [line for line in lines if line["message"].startswith("case open")]
        assert [line.get("request_id") for line in opened] == ["open-1"]
