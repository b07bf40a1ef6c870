"""Assertions for case-api's HTTP tests: problem+json answers, "nothing changed" snapshots, uploads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from aftersales_shared.outbox import OutboxMessage
from case_api.models import (
    Case,
    CaseEvent,
    CaseEvidence,
    CashbackTask,
    Evidence,
    LedgerEntry,
    LogisticsFollowUp,
    Order,
    OrderLine,
    ReshipOrder,
    RetentionEntry,
)
from case_api_testing import Api
from sqlmodel import col, func, select

PROBLEM_JSON = "application/problem+json"
COUNTED = {
    "cases": Case,
    "timeline": CaseEvent,
    "outbox": OutboxMessage,
    "cashback_tasks": CashbackTask,
    "ledger_entries": LedgerEntry,
    "case_evidence": CaseEvidence,
    "evidence": Evidence,
    "retention_register": RetentionEntry,
    "logistics_follow_up": LogisticsFollowUp,
    "reship_orders": ReshipOrder,
    "orders": Order,
    "order_lines": OrderLine,
}


@dataclass(frozen=True)
class Snapshot:
    """Row counts per table, and the version and status of every order, case and cashback task."""

    counts: dict[str, int]
    orders: dict[str, int]
    cases: dict[str, tuple[str, int]]
    tasks: dict[str, tuple[str, int]]


async def snapshot(api: Api) -> Snapshot:
    async with api.app.state.sessions() as session:
        counts = {
            name: int((await session.exec(select(func.count()).select_from(model))).one())
            for name, model in COUNTED.items()
        }
        orders = {o.order_id: o.version for o in (await session.exec(select(Order))).all()}
        cases = {c.id: (c.status, c.version) for c in (await session.exec(select(Case))).all()}
        tasks = {t.id: (t.status, t.version) for t in (await session.exec(select(CashbackTask))).all()}
    return Snapshot(counts, orders, cases, tasks)


class Unchanged:
    """`async with unchanged(api):` fails if the block changed any counted row, version or status."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.before: Snapshot | None = None

    async def __aenter__(self) -> Unchanged:
        self.before = await snapshot(self.api)
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            after = await snapshot(self.api)
            assert after == self.before, f"a refused request changed state:\n{self.before}\n{after}"


def unchanged(api: Api) -> Unchanged:
    return Unchanged(api)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with the exact media type, the status and (if given) the code."""
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def error_fields(body: dict[str, Any]) -> set[str]:
    """The fields a 422 names, without the `body.` prefix."""
    return {e["field"].removeprefix("body.") for e in body.get("errors", [])}


async def upload(
    api: Api, data: bytes, who: str = "storefront", name: str = "photo.jpg", content_type: str = "image/jpeg"
) -> str:
    response = await api.call("POST", "/v1/evidence", who, files={"file": (name, data, content_type)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def outbox_rows(api: Api, topic: str | None = None) -> list[OutboxMessage]:
    async with api.app.state.sessions() as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id))
        if topic is not None:
            query = query.where(OutboxMessage.topic == topic)
        return list((await session.exec(query)).all())
