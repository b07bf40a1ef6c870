"""The OpenAPI generates a correct typed client (issue 13, item 5): per-action bodies, problem+json
refusals parsed as Problem, bearer auth; and the docs pages come from the service itself."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from aftersales_shared.clock import SystemClock
from aftersales_shared.testing_openapi import check_docs_pages, check_document, generate_client, typed_client
from case_api.schemas import CasePublic
from case_api_testing import Api, order_body


def _call(module: Any, operation: str) -> Any:
    return importlib.import_module(f"{module.__name__}.api.{operation}")


class TestOpenApi:
    def test_the_document_says_what_the_service_does(self, api: Api) -> None:
        document = check_document(api.app)
        actions = [p for p in document["paths"] if "/actions/" in p]
        bodies = {p: document["paths"][p]["post"].get("requestBody", {}).get("content", {}) for p in actions}
        reject = bodies["/v1/cases/{case_id}/actions/reject"]["application/json"]["schema"]["$ref"]
        assert reject.endswith("/RejectBody")
        assert document["components"]["schemas"]["RejectBody"]["required"] == ["reason_code"]
        assert "requestBody" not in document["paths"]["/v1/cases/{case_id}/actions/approve"]["post"] or not (
            document["paths"]["/v1/cases/{case_id}/actions/approve"]["post"]["requestBody"].get("required")
        )
        refusal = document["paths"]["/v1/cases"]["post"]["responses"]["422"]
        examples = refusal["content"]["application/problem+json"]["examples"]
        assert examples["policy_refused"]["value"]["rule"] == "R-BEYOND-7D"

    async def test_docs_pages_need_no_cdn(self, api: Api) -> None:
        await check_docs_pages(api.client)

    async def test_a_generated_client_runs_a_case(self, api: Api, tmp_path: Path) -> None:
        client_module = generate_client(api.app, tmp_path, "case_api_client")
        models = importlib.import_module("case_api_client.models")
        storefront = typed_client(client_module, api.app, api.keys.storefront)
        support = typed_client(client_module, api.app, api.keys.support)

        put = await _call(client_module, "orders.put_order").asyncio_detailed(
            "o-1", client=storefront, body=models.OrderIn.from_dict(order_body())
        )
        assert put.status_code in (200, 201), put.content
        options = await _call(client_module, "orders.get_options").asyncio("o-1", client=storefront)
        assert any(o.remedy == "return_refund" and o.eligible for o in options.options)

        opened = await _call(client_module, "cases.open_case").asyncio(
            client=storefront,
            body=models.CaseCreate.from_dict(
                {
                    "order_id": "o-1",
                    "lines": [{"line_id": "L1", "quantity": 1}],
                    "remedy": "return_refund",
                    "reason": "no_reason",
                }
            ),
        )
        assert isinstance(opened, models.CasePublic), opened
        rejected = await _call(client_module, "cases.case_reject").asyncio(
            opened.id,
            client=support,
            body=models.RejectBody(reason_code="not_eligible", expected_version=opened.version),
        )
        assert isinstance(rejected, models.CasePublic) and rejected.status == "rejected"

        # Refusals come back typed: a move the status does not allow, and a missing key.
        refused = await _call(client_module, "cases.case_approve").asyncio_detailed(opened.id, client=support)
        assert refused.status_code == 409 and isinstance(refused.parsed, models.Problem)
        assert refused.parsed.code == "invalid_transition"
        anonymous = client_module.Client(
            base_url="http://test", httpx_args={"transport": support.get_async_httpx_client()._transport}
        )
        denied = await _call(client_module, "cases.get_case").asyncio_detailed(opened.id, client=anonymous)
        assert denied.status_code == 401 and denied.parsed.code == "unauthenticated"


class TestExamples:
    async def test_the_docs_example_order_is_inside_its_return_window_today(self, api: Api) -> None:
        """It was signed on a fixed date once, and R-BEYOND-7D refused it a week later."""
        api.clock.advance(seconds=(SystemClock().now() - api.clock.now()).total_seconds())
        example = api.app.openapi()["components"]["schemas"]["OrderIn"]["examples"][0]
        body = example | {"shop_id": "shop-a"}
        put = await api.call("PUT", "/v1/orders/o-example", "storefront", json=body)
        assert put.status_code in (200, 201), put.text
        options = (await api.call("GET", "/v1/orders/o-example/after-sales-options", "storefront")).json()
        no_reason = [o for o in options["options"] if o["reason"] == "no_reason"]
        assert no_reason and all(o["eligible"] for o in no_reason), options

    def test_a_case_answer_has_an_example_that_is_a_case(self, api: Api) -> None:
        case = api.app.openapi()["components"]["schemas"]["CasePublic"]
        assert CasePublic.model_validate(case["examples"][0]).status == "awaiting_return"
