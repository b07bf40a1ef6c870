"""X-Request-ID (issue 13, item 7): accepted or generated, echoed on every answer, on every log line written
while the request is served, and as the problem's `instance`; and every application metric is prefixed
`aftersales_`."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from aftersales_shared.logging import JsonFormatter
from aftersales_shared.problems import Problem
from aftersales_shared.web import configure_app
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import BaseModel

log = logging.getLogger("test.request_ids")


class Body(BaseModel):
    n: int


def app() -> FastAPI:
    the_app = FastAPI()
    configure_app(the_app, "test", max_body_bytes=1024)

    @the_app.get("/ok")
    async def ok() -> dict[str, str]:
        log.info("served")
        return {"status": "ok"}

    @the_app.get("/refused")
    async def refused() -> None:
        raise Problem(409, "conflict", "Conflict")

    @the_app.post("/body")
    async def body(value: Body) -> dict[str, int]:
        return {"n": value.n}

    @the_app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return the_app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


GENERATED = re.compile(r"^[0-9a-f]{32}$")


class TestRequestId:
    async def test_a_given_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ok", headers={"X-Request-ID": "storefront-42.abc"})
        assert response.headers["x-request-id"] == "storefront-42.abc"

    async def test_without_one_an_id_is_generated(self, client: httpx.AsyncClient) -> None:
        first, second = (
            (await client.get("/ok")).headers["x-request-id"],
            (await client.get("/ok")).headers["x-request-id"],
        )
        assert GENERATED.match(first) and GENERATED.match(second) and first != second

    @pytest.mark.parametrize("given", [b"x" * 129, b"a b", "id\u00e9".encode(), b"", b"a\tb", b'a"}'])
    async def test_an_unusable_id_is_replaced(self, client: httpx.AsyncClient, given: bytes) -> None:
        response = await client.get("/ok", headers={"X-Request-ID": given})
        assert GENERATED.match(response.headers["x-request-id"])

    async def test_every_problem_names_the_request_as_its_instance(self, client: httpx.AsyncClient) -> None:
        cases = [
            ("GET", "/refused", {}, 409),
            ("GET", "/missing", {}, 404),
            ("POST", "/body", {"content": b"{", "headers": {"content-type": "application/json"}}, 400),
            ("POST", "/body", {"json": {"n": "x"}}, 422),
            ("POST", "/body", {"content": b"{" + b" " * 2000 + b"}"}, 413),
            ("GET", "/crash", {}, 500),
        ]
        for method, path, kwargs, status in cases:
            headers = {**kwargs.pop("headers", {}), "X-Request-ID": f"req-{status}"}
            response = await client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == status, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["x-request-id"] == f"req-{status}"
            assert response.json()["instance"] == f"urn:request:req-{status}", path

    async def test_log_lines_carry_it(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        await client.get("/ok", headers={"X-Request-ID": "r-1"})
        await client.get("/crash", headers={"X-Request-ID": "r-2"})
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
        served = [line for line in lines if line["message"] == "served"]
        crashed = [line for line in lines if line["message"] == "unhandled error"]
        assert [line["request_id"] for line in served] == ["r-1"]
        assert [line["request_id"] for line in crashed] == ["r-2"] and "boom" in crashed[0]["error"]
        log.info("outside any request")
        assert "request_id" not in json.loads(JsonFormatter().format(caplog.records[-1]))


class TestMetricNames:
    def test_every_application_metric_is_prefixed(self) -> None:
        import case_api.main  # noqa: F401  (each service registers its metrics on import)
        import logistics_watcher.main  # noqa: F401
        import payout_worker.main  # noqa: F401

        names = {metric.name for metric in REGISTRY.collect()}
        runtime = {n for n in names if n.startswith(("python_", "process_", "platform_"))}
        assert names - runtime, "no application metric registered"
        assert {n for n in names - runtime if not n.startswith("aftersales_")} == set()
