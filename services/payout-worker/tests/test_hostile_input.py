"""Inputs that answered 5xx (issue 11, item 5) answer 4xx problem+json and change nothing, on SQLite and
PostgreSQL: a register day a day cannot be added to, payout ids no ledger entry could have, NUL characters
(PostgreSQL text cannot hold them), bodies of any size; approvals carrying any of these become failed
payouts (INVALID_APPROVAL) rather than errors; and amounts stay exact in both databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.migrations import alembic_config, upgrade
from aftersales_shared.pagination import encode_cursor
from payout_testing import SERVICE_DIR, Worker, any_db_worker, approved, approved_as_sent, running_worker

PROBLEM_JSON = "application/problem+json"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        w.runner._backoff = 0  # no waiting between the per-event retries
        yield w


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


class TestRegisterDay:
    @pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
    async def test_a_day_out_of_range_is_422(self, any_db: Worker, day: str) -> None:
        response = await any_db.call("GET", "/v1/registers/cashback", "ops", params={"date": day})
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "query.date"

    async def test_the_last_day_in_range_answers(self, any_db: Worker) -> None:
        response = await any_db.call("GET", "/v1/registers/cashback", "ops", params={"date": "2099-12-31"})
        assert response.status_code == 200 and response.json()["count"] == 0


class TestPayoutIds:
    @pytest.mark.parametrize("payout_id", ["p" * 41, "p" * 5000, "po_%00", "%00", "po_😀", "po 1"])
    async def test_one_no_payout_could_have_is_422(self, any_db: Worker, payout_id: str) -> None:
        for method, path in (
            ("GET", f"/v1/payouts/{payout_id}"),
            ("POST", f"/v1/payouts/{payout_id}/release"),
            ("POST", f"/v1/payouts/{payout_id}/cancel"),
        ):
            response = await any_db.call(method, path, "ops")
            assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "path.payout_id"

    async def test_a_cursor_that_is_no_id_is_400(self, any_db: Worker) -> None:
        for last_id in ("\x00", "p" * 65):
            for path in ("/v1/payouts", "/v1/batches"):
                response = await any_db.call("GET", path, "ops", params={"cursor": encode_cursor(last_id)})
                problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize("name", ["cashback_task_id", "order_id", "batch_id"])
    async def test_a_nul_in_a_filter_is_422(self, any_db: Worker, name: str) -> None:
        response = await any_db.call("GET", "/v1/payouts", "ops", params={name: "x\x001"})
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == f"query.{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def strict(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    """A worker that holds every transfer over 10.00 for review."""
    async for w in any_db_worker(request.param, tmp_path, limit_per_transfer=Decimal("10.00")):
        yield w


class TestReviewNotes:
    async def test_a_nul_in_a_note_is_422_and_the_payout_stays_held(self, strict: Worker) -> None:
        await strict.deliver(approved("cb-1", amount="12.00"))
        payout = await strict.payout("cb-1")
        assert payout.status == "held_for_review"
        for action in ("release", "cancel"):
            response = await strict.call(
                "POST", f"/v1/payouts/{payout.id}/{action}", "ops", json={"note": "ok\x00"}
            )
            assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "body.note"
        assert (await strict.payout("cb-1")).status == "held_for_review"


class TestApprovals:
    @pytest.mark.parametrize(
        "changes",
        [
            {"approved_at": "0001-01-01T00:00:00+14:00"},  # overflows in UTC
            {"approved_at": "9999-12-31T23:59:59-12:00"},
            {"payee": {"alipay_account": "zhang\x00san@example.com", "name": "张\x00三"}, "reason": "a\x00b"},
            *(
                {"amount": amount}
                for amount in (10**19, 12345678901234567, 10**10, "10000000000.00", "1000000.01")
            ),
        ],
    )
    async def test_what_no_approval_can_carry_is_parked_and_changes_nothing(
        self, any_db: Worker, changes: dict[str, Any]
    ) -> None:
        """case-api signs only what the shared model reads, so this was never signed by it: parked with
        why, no payout, no result (one would release the money of the task it names)."""
        event = approved_as_sent("cb-bad", **changes)
        await any_db.deliver(approved("cb-1"), event)
        assert await any_db.statuses() == {"cb-1": "pending"} and await any_db.results() == []
        assert "not an approval" in (await any_db.parked())[event.id]

    async def test_the_maximum_is_paid_exactly(self, any_db: Worker) -> None:
        await any_db.deliver(approved("cb-top", amount="1000000.00"), approved("cb-cent", amount="0.10"))
        assert (await any_db.payout("cb-top")).amount == Decimal("1000000.00")
        await any_db.call("POST", "/v1/batches/flush", "ops")
        await any_db.tick()
        (batch,) = (await any_db.call("GET", "/v1/batches", "ops")).json()["items"]
        assert (batch["total"], batch["paid_total"]) == ("1000000.10", "1000000.10")
        listed = (await any_db.call("GET", "/v1/payouts", "ops")).json()["items"]
        assert sorted(p["amount"] for p in listed) == ["0.10", "1000000.00"]


class TestBodyLimit:
    async def test_a_body_over_the_limit_is_413(self, tmp_path: Path) -> None:
        async for worker in running_worker(tmp_path, max_body_bytes=2048):
            note = json.dumps({"note": "x" * 400}).encode() * 8  # not even JSON: refused before parsing
            for action in ("release", "cancel"):
                response = await worker.call(
                    "POST",
                    f"/v1/payouts/po_1/{action}",
                    "ops",
                    content=note,
                    headers={"Content-Type": "application/json"},
                )
                assert problem(response, 413, "body_too_large")["limit"] == 2048


class TestMoneyInSQLiteMigrates:
    async def test_existing_amounts_become_cents_and_back(self, worker: Worker, tmp_path: Path) -> None:
        from alembic import command
        from alembic.script import ScriptDirectory

        await worker.deliver(approved("cb-1", amount="12.29"), approved("cb-2", amount="1000000.00"))
        url = worker.app.state.settings.sqlalchemy_url
        config = alembic_config(SERVICE_DIR, url)
        (revision,) = [
            r
            for r in ScriptDirectory.from_config(config).walk_revisions()
            if "money_in_cents" in (r.path or "")
        ]

        def stored() -> list[tuple[Any, ...]]:
            with sqlite3.connect(tmp_path / "payout_worker.db") as conn:
                return conn.execute("SELECT amount FROM payouts ORDER BY cashback_task_id").fetchall()

        assert stored() == [(1229,), (100000000,)]
        await asyncio.to_thread(command.downgrade, config, str(revision.down_revision))
        assert stored() == [(12.29,), (1000000,)]
        await upgrade(SERVICE_DIR, url)
        assert stored() == [(1229,), (100000000,)]
        assert [(await worker.payout(t)).amount for t in ("cb-1", "cb-2")] == [
            Decimal("12.29"),
            Decimal("1000000.00"),
        ]
