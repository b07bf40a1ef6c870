"""The watcher's OpenAPI generates a correct typed client; its docs pages need no CDN (issue 13, item 5)."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

from aftersales_shared.testing_openapi import check_docs_pages, check_document, generate_client, typed_client
from watcher_testing import Watcher, scan


class TestOpenApi:
    async def test_document_and_docs_pages(self, watcher: Watcher) -> None:
        check_document(watcher.app)
        await check_docs_pages(watcher.client)

    async def test_a_generated_client_sends_scans_and_reads_the_parcel(
        self, watcher: Watcher, tmp_path: Path
    ) -> None:
        module = generate_client(watcher.app, tmp_path, "watcher_client")
        models = importlib.import_module("watcher_client.models")
        api = importlib.import_module("watcher_client.api")
        warehouse = typed_client(module, watcher.app, watcher.keys.warehouse)
        post = importlib.import_module(f"{api.__name__}.tracking.post_tracking_events")
        events = [scan("picked_up", at=-timedelta(hours=2)), scan("in_transit", at=-timedelta(hours=1))]
        sent = await post.asyncio(client=warehouse, body=models.TrackingBatchIn.from_dict({"events": events}))
        assert isinstance(sent, models.TrackingBatchOut) and sent.accepted == 2
        get = importlib.import_module(f"{api.__name__}.parcels.get_parcel")
        parcel = await get.asyncio("SF1000001", client=warehouse)
        assert isinstance(parcel, models.ParcelOut) and parcel.status == "in_transit"
        missing = await get.asyncio_detailed("SF404", client=warehouse)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
