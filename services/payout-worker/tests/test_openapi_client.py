"""payout-worker's OpenAPI generates a correct typed client; its docs pages need no CDN (issue 13, item 5)."""

from __future__ import annotations

import importlib
from pathlib import Path

from aftersales_shared.testing_openapi import check_docs_pages, check_document, generate_client, typed_client
from payout_testing import Worker, approved, at


class TestOpenApi:
    async def test_document_and_docs_pages(self, worker: Worker) -> None:
        check_document(worker.app)
        await check_docs_pages(worker.client)

    async def test_a_generated_client_reads_payouts(self, worker: Worker, tmp_path: Path) -> None:
        await worker.deliver(approved("cb-1", when=at("2026-11-05 10:00")))
        module = generate_client(worker.app, tmp_path, "payout_client")
        models = importlib.import_module("payout_client.models")
        ops = typed_client(module, worker.app, worker.keys.ops)
        list_payouts = importlib.import_module("payout_client.api.payouts.list_payouts")
        page = await list_payouts.asyncio(client=ops)
        assert [p.cashback_task_id for p in page.items] == ["cb-1"]
        assert page.items[0].amount == "12.00"
        get_payout = importlib.import_module("payout_client.api.payouts.get_payout")
        missing = await get_payout.asyncio_detailed("po-404", client=ops)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
        assert missing.parsed.code == "not_found"
