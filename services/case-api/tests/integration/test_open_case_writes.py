"""Opening a case writes its rows in one statement (P1): the case, its ledger entries, its timeline entry and
its outbox event go to PostgreSQL in one round trip after the order's lock and the ledger's history, and to
SQLite one INSERT per table; whatever the backend, the rows are those of the case, and a refusal or a
rollback leaves none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aftersales_shared import contracts
from aftersales_shared.auth import Principal, Role
from aftersales_shared.db import insert_rows, unit_of_work
from aftersales_shared.events import CaseEvent as CaseEventData
from aftersales_shared.events import envelope
from aftersales_shared.outbox import OutboxMessage, outbox_row
from aftersales_testing import tables_on
from case_api import handlers
from case_api.models import Case, CaseEvent, LedgerEntry, Order
from case_api.schemas import CaseCreate
from case_api_checks import assert_problem, unchanged
from case_api_testing import Api
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
STOREFRONT = Principal(key_id="key_t", name="storefront", roles=frozenset({Role.storefront}), shops=None)
TABLES = [m.__table__ for m in (Order, Case, CaseEvent, LedgerEntry, OutboxMessage)]


def order_row() -> Order:
    return Order(
        order_id="o-1",
        shop_id="shop-a",
        platform="tmall",
        buyer={"id": "buyer-1"},
        buyer_id="buyer-1",
        paid_at=NOW,
        shipping_fee=Decimal("10.00"),
        created_at=NOW,
        updated_at=NOW,
    )


def case_row(case_id: str = "case_1") -> Case:
    return Case(
        id=case_id,
        order_id="o-1",
        shop_id="shop-a",
        remedy="return_refund",
        reason="no_reason",
        status="retention",
        stage="after_receipt",
        description="不想要了",
        lines=[{"line_id": "L1", "quantity": 1}],
        amount=Decimal("50.00"),
        line_amounts={"L1": "50.00"},
        details={"rules": ["R-7D"]},
        created_by="storefront",
        created_at=NOW,
        updated_at=NOW,
    )


def entry(entry_id: str, bucket: str, amount: str) -> LedgerEntry:
    return LedgerEntry(
        id=entry_id,
        order_id="o-1",
        line_id="L1",
        bucket=bucket,
        kind="refund",
        amount=Decimal(amount),
        status="reserved",
        case_id="case_1",
        created_at=NOW,
        updated_at=NOW,
    )


def timeline(case: Case) -> CaseEvent:
    return CaseEvent(
        id="cev_1", case_id=case.id, action="open", actor="storefront", to_status=case.status, data={}, at=NOW
    )


def opened(case: Case) -> CaseEventData:
    return CaseEventData(
        case_id=case.id,
        order_id=case.order_id,
        shop_id=case.shop_id,
        remedy=case.remedy,
        reason=case.reason,
        status=case.status,
        action="open",
        amount=case.amount,
        version=case.version,
    )


def case_event(session: AsyncSession, case: Case) -> OutboxMessage:
    return outbox_row(
        session, contracts.case_event("opened"), opened(case), source="/case-api", subject=case.id, at=NOW
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with tables_on(request.param, tmp_path, "insert_rows", TABLES) as sessions:
        yield sessions


def statements_on(session_connection: Any) -> list[str]:
    """The statements sent on this connection from now on."""
    sent: list[str] = []
    event.listen(
        session_connection.sync_connection,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: sent.append(statement),
    )
    return sent


class TestInsertRows:
    async def test_rows_of_four_tables_are_stored_as_given(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        async with unit_of_work(sessions) as session:
            case = case_row()
            sent = statements_on(await session.connection())
            outgoing = case_event(session, case)
            await insert_rows(
                session,
                order_row(),
                case,
                entry("led_1", "goods", "50.00"),
                entry("led_2", "postage", "10.00"),
                timeline(case),
                outgoing,
            )
            # one round trip on PostgreSQL; an INSERT per table elsewhere
            assert len(sent) == (1 if session.get_bind().dialect.name == "postgresql" else 5)
            assert session.info["outbox_dirty"] and not session.new  # nothing left for the ORM to flush
        async with sessions() as session:
            [stored] = (await session.exec(select(Case))).all()
            assert stored.model_dump() == case.model_dump() | {
                "created_at": stored.created_at,
                "updated_at": stored.updated_at,
            }
            assert stored.created_at.replace(tzinfo=UTC) == NOW
            entries = (await session.exec(select(LedgerEntry).order_by(col(LedgerEntry.id)))).all()
            assert [(e.id, e.bucket, e.amount, e.case_id) for e in entries] == [
                ("led_1", "goods", Decimal("50.00"), "case_1"),
                ("led_2", "postage", Decimal("10.00"), "case_1"),
            ]
            [cev] = (await session.exec(select(CaseEvent))).all()
            assert (cev.case_id, cev.action, cev.to_status) == ("case_1", "open", "retention")
            [message] = (await session.exec(select(OutboxMessage))).all()
            assert message.id is not None and message.sent_at is None  # the database numbered it
            assert (message.event_id, message.payload) == (outgoing.event_id, outgoing.payload)

    async def test_a_rollback_keeps_none_of_them(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session:
            case = case_row()
            await insert_rows(session, order_row(), case, timeline(case), case_event(session, case))
            await session.rollback()
        async with sessions() as session:
            for model in (Order, Case, CaseEvent, OutboxMessage):
                assert (await session.exec(select(model))).all() == []

    async def test_a_row_naming_a_missing_case_is_refused_whole(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """The timeline's foreign key holds inside the one statement: nothing of it is stored."""
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            async with unit_of_work(sessions) as session:
                case = case_row()
                await insert_rows(
                    session, order_row(), case_row("case_2"), timeline(case), case_event(session, case)
                )
        async with sessions() as session:
            for model in (Order, Case, CaseEvent, OutboxMessage):
                assert (await session.exec(select(model))).all() == []


def test_the_outbox_row_holds_the_envelope() -> None:
    """`outbox_row` serialises the payload once, as `envelope(...).to_bytes()` would, keyed and routed by
    the contract, and marks the transaction for the relay."""
    session = SimpleNamespace(info={})
    case = case_row()
    row = case_event(session, case)  # type: ignore[arg-type]
    expected = envelope(
        source="/case-api", type="aftersales.case.opened.v1", subject=case.id, data=opened(case), at=NOW
    )
    assert row.payload == expected.model_copy(update={"id": row.event_id}).to_bytes()
    assert (row.topic, row.key, row.created_at) == ("aftersales.cases.v1", "o-1", NOW)
    assert session.info == {"outbox_dirty": True}


class TestOpenCaseStatements:
    async def test_a_case_opens_with_the_lock_the_lines_the_history_and_one_insert(
        self, any_db_api: Api
    ) -> None:
        """The order lock stays in the path, and what is read after it sees what the lock waited for; on
        PostgreSQL nothing else is a round trip."""
        api = any_db_api
        await api.put_order()
        body = CaseCreate.model_validate(
            {
                "order_id": "o-1",
                "lines": [{"line_id": "L1", "quantity": 1}],
                "remedy": "return_refund",
                "reason": "no_reason",
            }
        )
        app = api.app
        async with unit_of_work(app.state.sessions) as session:
            connection = await session.connection()
            sent = statements_on(connection)
            ctx = handlers.Context(
                session=session,
                principal=STOREFRONT,
                now=api.clock.now(),
                calendar=app.state.calendar,
                approval_signer=app.state.approval_signer,
            )
            case = await handlers.open_case(ctx, body)
        if connection.dialect.name == "postgresql":
            assert len(sent) == 4, sent
            assert "FOR UPDATE" in sent[0] and "FROM order_lines" in sent[1]
            assert "UNION ALL" in sent[2] and sent[3].startswith("WITH")
        timeline_entries = (await api.call("GET", f"/v1/cases/{case.id}/timeline", "support")).json()
        assert [e["action"] for e in timeline_entries] == ["open"]
        stored = (await api.call("GET", f"/v1/cases/{case.id}", "support")).json()
        assert (stored["status"], stored["amount"]) == (case.status, f"{case.amount:.2f}")

    async def test_a_refusal_writes_nothing(self, any_db_api: Api) -> None:
        api = any_db_api
        await api.put_order()
        async with unchanged(api):
            refused = await api.open_case(lines=[{"line_id": "L1", "quantity": 9}])
        assert_problem(refused, 422)
