"""What logistics-watcher must not leak (issue 11, item 6): the buyer data carriers write into scans (the
signer's name, a phone, an address) in the log of a 500, and whether another shop's parcel exists (its
404 is a missing one's, byte for byte)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared.logging import JsonFormatter
from aftersales_testing import this_request
from sqlalchemy import text
from watcher_testing import Watcher, scan, watcher_on

PROBLEM_JSON = "application/problem+json"
DESCRIPTION = "已签收，签收人：欧阳娜娜，电话 +86 139-8765-4321，地址 广东省深圳市南山区科技园路 8 栋 1201 室"
SECRETS = ("欧阳娜娜", "娜娜", "139-8765-4321", "8765", "科技园路", "1201 室")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Watcher]:
    async with watcher_on(request.param, tmp_path) as running:
        yield running


class TestServerErrorLogs:
    async def test_a_500_on_ingest_logs_none_of_the_buyer_data_in_the_scan(
        self, any_db: Watcher, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A database error on the scans insert (forced: a unique index on the description, so a second
        scan with the same text fails): the statement's parameters and PostgreSQL's DETAIL would quote the
        description; the 500's log says what failed without it."""
        async with any_db.app.state.sessions() as session:
            await session.exec(text("CREATE UNIQUE INDEX leak_test_description ON scans (description)"))  # type: ignore[call-overload]
            await session.commit()
        await any_db.send(scan("delivered", description=DESCRIPTION, location="南山区科技园路 8 栋"))
        caplog.set_level(logging.INFO)
        caplog.clear()
        response = await any_db.call(
            "POST",
            "/v1/tracking-events",
            "warehouse",
            json={"events": [scan("delivered", description=DESCRIPTION, tracking_no="SF1000002")]},
        )
        assert response.status_code == 500, response.text
        assert not [s for s in SECRETS if s in response.text]
        [crash] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
        assert crash.exc_info is not None and "hide_parameters=True" in str(crash.exc_info[1])
        line = json.loads(JsonFormatter().format(crash))
        assert line["path"] == "/v1/tracking-events" and "IntegrityError" in line["error"]
        everything = "\n".join(JsonFormatter().format(r) for r in caplog.records)
        assert not [s for s in SECRETS if s in everything], everything


class TestAnotherShopsParcelIsNotFound:
    async def test_it_answers_exactly_as_a_missing_parcel(self, any_db: Watcher) -> None:
        await any_db.send(
            scan(tracking_no="SFB0001", shop_id="shop-b"),
            scan(tracking_no="SFN0001", shop_id=None),
            who="admin",
        )
        missing = await any_db.call("GET", "/v1/parcels/SFX0001", "support")
        for tracking_no in ("SFB0001", "SFN0001"):  # shop-b's, and one whose shop is not known yet
            other = await any_db.call("GET", f"/v1/parcels/{tracking_no}", "support")
            assert (other.status_code, other.headers["content-type"]) == (404, PROBLEM_JSON)
            assert this_request(other) == this_request(missing).replace(b"SFX0001", tracking_no.encode())
        assert missing.json()["detail"] == "no parcel 'SFX0001' here"
