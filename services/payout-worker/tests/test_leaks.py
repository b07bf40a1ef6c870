"""What payout-worker must not leak (issue 11, item 6): payee accounts and names in its log and dead-letter
lines, whether another shop's payout exists (its 404 is a missing one's, byte for byte), and formulas in
the cashback register's CSV."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aftersales_shared import deadletters, topics
from aftersales_shared.logging import JsonFormatter
from aftersales_testing import this_request
from payout_testing import Worker, any_db_worker, approved, approved_as_sent, at
from payout_worker.api.registers import COLUMNS
from sqlalchemy import text

ACCOUNT = "ouyang.nana@example.com"
NAME = "欧阳娜娜"
SECRETS = (ACCOUNT, "ouyang.nana", NAME, "娜娜")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        w.runner._backoff = 0  # no waiting between the per-event retries
        yield w


class TestDeadLetterLines:
    async def test_an_approval_the_database_refuses_is_parked_without_its_payee_in_any_line(
        self, any_db: Worker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A database error on the ledger insert (forced: a unique index on the payee) quotes the row in
        SQLAlchemy's parameters and PostgreSQL's DETAIL: the retries' tracebacks, the parked line, the DLQ
        header and `dlq list` show neither the payee's account nor name."""
        async with any_db.app.state.sessions() as session:
            await session.exec(text("CREATE UNIQUE INDEX leak_test_payee ON payouts (payee_account)"))  # type: ignore[call-overload]
            await session.commit()
        payee = {"alipay_account": ACCOUNT, "name": NAME}
        caplog.set_level(logging.INFO)
        await any_db.deliver(approved_as_sent("cb-1", payee=payee), approved_as_sent("cb-2", payee=payee))
        assert await any_db.statuses() == {"cb-1": "pending"} and any_db.runner.dead_lettered == 1

        lines = [JsonFormatter().format(r) for r in caplog.records]
        assert any("event parked on" in line and "IntegrityError" in line for line in lines), lines
        assert not [line for line in lines if any(s in line for s in SECRETS)]

        dlq = await any_db.bus.consumer("inspect", [topics.dlq(topics.CASHBACK)])
        (parked,) = await dlq.fetch(timeout_ms=200)
        error = dict(parked.headers)["error"].decode()
        assert "IntegrityError" in error and not [s for s in SECRETS if s in error], error
        listed = str(await deadletters.list_parked(any_db.bus, topics.CASHBACK, wait=0.5))
        assert "IntegrityError" in listed and not [s for s in SECRETS if s in listed], listed


def a_missing(ident: str) -> str:
    return ident[:-1] + ("x" if ident[-1] != "x" else "y")


class TestAnotherShopsPayoutIsNotFound:
    async def test_read_release_and_cancel_answer_as_for_a_missing_payout(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-b", shop_id="shop-b"))
        real = (await worker.payout("cb-b")).id
        missing = a_missing(real)
        for method, path in (
            ("GET", "/v1/payouts/{}"),
            ("POST", "/v1/payouts/{}/release"),
            ("POST", "/v1/payouts/{}/cancel"),
        ):
            other = await worker.call(method, path.format(real), "ops")  # an ops key of shop-a
            absent = await worker.call(method, path.format(missing), "ops")
            for response in (other, absent):
                assert response.status_code == 404, response.text
                assert response.headers["content-type"] == "application/problem+json"
            assert this_request(other) == this_request(absent).replace(missing.encode(), real.encode())
        assert other.json()["detail"] == f"no payout {real!r} here"
        assert (await worker.payout("cb-b")).status == "pending"  # nothing changed


KEYS = {c.header: c.key for c in COLUMNS}


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    """The rows keyed by the register's JSON keys (the CSV's headers are Chinese)."""
    assert response.status_code == 200, response.text
    rows = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    return [{KEYS[header]: value for header, value in row.items()} for row in rows]


class TestRegisterCsv:
    async def test_payee_cells_a_spreadsheet_would_run_are_quoted(self, worker: Worker) -> None:
        payees = [
            {"alipay_account": "-13812345678", "name": '=HYPERLINK("http://x")'},
            {"alipay_account": "+8613812345678", "name": "@SUM(1)"},
            {"alipay_account": "zhangsan@example.com", "name": "\t=1"},
            {"alipay_account": "lisi@example.com", "name": "李四"},
        ]
        await worker.deliver(
            *(
                approved_as_sent(f"cb-{n}", payee=payee, approved_at=at("2026-11-05 10:00").isoformat())
                for n, payee in enumerate(payees)
            )
        )
        await worker.tick(at("2026-11-05 17:30"))
        rows = csv_rows(
            await worker.call(
                "GET", "/v1/registers/cashback", "ops", params={"date": "2026-11-05", "format": "csv"}
            )
        )
        assert sorted((r["cashback_task_id"], r["payee_name"], r["payee_account"]) for r in rows) == [
            ("cb-0", '\'=HYPERLINK("http://x")', "'-13812345678"),
            ("cb-1", "'@SUM(1)", "'+8613812345678"),
            ("cb-2", "'\t=1", "zhangsan@example.com"),
            ("cb-3", "李四", "lisi@example.com"),
        ]
        assert all(r["amount"] == "12.00" for r in rows)
