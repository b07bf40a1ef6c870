"""Buyer data never leaks through logs, dead letters, 404s or CSV exports (issue 11, item 6): phones in every
common form, addresses, names and payee accounts are masked wherever anything is logged; SQL parameters
never reach an error's text; a missing thing and another shop's thing answer the same 404; a CSV cell that a
spreadsheet would run as a formula is shown as text."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import deadletters
from aftersales_shared import topics as topic_module
from aftersales_shared.auth import Principal, Role
from aftersales_shared.bus import Bus, OutRecord, Record
from aftersales_shared.clock import SystemClock
from aftersales_shared.consumer import ConsumerRunner
from aftersales_shared.db import make_engine, session_factory
from aftersales_shared.events import CloudEvent
from aftersales_shared.export import protect_cell, register_response
from aftersales_shared.logging import (
    JsonFormatter,
    mask_account,
    mask_address,
    mask_name,
    mask_phone,
    mask_text,
    mask_value,
)
from aftersales_shared.outbox import InboxEntry
from aftersales_shared.problems import Problem, not_found
from bus_testing import topic_names
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

PHONE = "13812345678"
ADDRESS = "浙江省杭州市西湖区文三路 1 号"
NAME = "张三"
ACCOUNT = "zhangsan@example.com"

# The forms a buyer's phone is written in, by storefronts, carriers and people.
MOBILE_FORMS = [
    "13812345678",
    "138 1234 5678",
    "138-1234-5678",
    "138.1234.5678",
    "+86 138 1234 5678",
    "+86-138-1234-5678",
    "+86 13812345678",
    "+8613812345678",
    "(+86) 138-1234-5678",
    "0086 138 1234 5678",
    "008613812345678",
    "86 138 1234 5678",
]
LANDLINE_FORMS = [
    "(0571) 8765 4321",
    "(0571)87654321",
    "0571-87654321",
    "0571 8765 4321",
    "010-87654321",
    "010 8765 4321",
    "+86 571 8765 4321",
    "+86-571-87654321",
    "0086 (0)571-87654321",
]


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


class TestPhones:
    @pytest.mark.parametrize("form", MOBILE_FORMS)
    def test_every_form_of_a_mobile_is_masked_in_free_text(self, form: str) -> None:
        masked = mask_phone(f"buyer called from {form}, twice")
        assert masked.startswith("buyer called from ") and masked.endswith(", twice")
        assert "138****5678" in masked
        assert "1234" not in masked  # the middle digits are gone
        assert digits(PHONE) not in digits(masked)

    @pytest.mark.parametrize("form", LANDLINE_FORMS)
    def test_every_form_of_a_landline_is_masked_in_free_text(self, form: str) -> None:
        masked = mask_phone(f"电话 {form}。")
        assert "8765" not in masked and masked.endswith("****4321。"), masked

    def test_phones_next_to_chinese_text_or_punctuation(self) -> None:
        assert mask_phone("电话13812345678，地址") == "电话138****5678，地址"
        assert mask_phone("tel:+86-138-1234-5678;") == "tel:+86 138****5678;"

    @pytest.mark.parametrize(
        "text",
        [
            "order 2026110113812345678",  # part of a longer number
            "tracking SF13812345678 and YT1381234567890",  # a carrier's tracking number
            "at 2026-11-30T08:02:13.123+08:00",
            "amount 12345678.00 and 0.00",
            "evt_0123456789abcdef e7c1f2a4-13812345678a",
            "offset 000012345678",
        ],
    )
    def test_ids_times_and_amounts_are_left_alone(self, text: str) -> None:
        assert mask_phone(text) == text
        assert mask_text(text) == text


class TestAddressesNamesAndAccounts:
    @pytest.mark.parametrize(
        ("address", "masked"),
        [
            (ADDRESS, "浙江省杭州市***"),
            ("上海市浦东新区世纪大道 100 号", "上海市***"),
            ("北京市朝阳区建国路88号SOHO现代城A座1201室", "北京市***"),
            ("新疆维吾尔自治区乌鲁木齐市天山区解放南路 2 号", "新疆维吾尔自治区乌鲁木齐市***"),
            ("文三路 1 号", "***"),
            ("1 Main Street, Springfield", "***"),
        ],
    )
    def test_an_address_keeps_only_its_province_and_city(self, address: str, masked: str) -> None:
        assert mask_address(address) == masked

    @pytest.mark.parametrize(
        ("text", "gone"),
        [
            (f"送货地址：{ADDRESS}，请尽快", "西湖区文三路"),
            ("寄回 北京市朝阳区建国路88号SOHO现代城A座1201室 谢谢", "建国路88号"),
            ("address 广东省深圳市南山区科技园路 8 栋 1201 室", "科技园路"),
        ],
    )
    def test_addresses_are_masked_in_free_text(self, text: str, gone: str) -> None:
        masked = mask_text(text)
        assert gone not in masked and "***" in masked, masked

    def test_chinese_text_that_is_no_address_is_left_alone(self) -> None:
        for text in ("商品质量问题, 型号不对, 纯棉T恤", "买家已确认收货", "休闲裤 L1 x 1"):
            assert mask_text(text) == text

    def test_names_and_accounts(self) -> None:
        assert mask_name(NAME) == "张*"
        assert mask_name("欧阳娜娜") == "欧*"
        assert mask_name("Zhang San") == "Z***"
        assert mask_account(ACCOUNT) == "zh***@example.com"
        assert mask_account("13812345678") == "138****5678"
        assert mask_account("2088123456781234") == "2088********1234"
        assert mask_account("zhangsan_alipay") == "zh***"

    @pytest.mark.parametrize(
        ("text", "gone"),
        [
            ("您的快件已签收，签收人：张三，电话 138-1234-5678", [NAME, "1234"]),
            ("收件人: 欧阳娜娜 地址：浙江省杭州市西湖区文三路 1 号", ["欧阳娜娜", "文三路"]),
            ("payee zhangsan@example.com, 2088123456781234", [ACCOUNT, "2088123456781234"]),
        ],
    )
    def test_labelled_names_emails_and_alipay_ids_in_free_text(self, text: str, gone: list[str]) -> None:
        masked = mask_text(text)
        assert not [g for g in gone if g in masked], masked

    def test_values_under_sensitive_keys_in_reprs_and_json(self) -> None:
        buyer = {"id": "b-1", "name": NAME, "phone": PHONE, "address": ADDRESS, "alipay_account": ACCOUNT}
        for text in (
            repr({"buyer": buyer}),
            json.dumps({"buyer": buyer}, ensure_ascii=False),
            json.dumps({"payee": {"alipay_account": ACCOUNT, "name": NAME}}, ensure_ascii=False),
            f"Payee(alipay_account='{ACCOUNT}', name='{NAME}') payee_name={NAME}",
            f"Transfer(payee_account='zhangsan_alipay', payee_name='{NAME}', identity='zhangsan_alipay')",
        ):
            masked = mask_text(text)
            assert not [s for s in (NAME, PHONE, "文三路", ACCOUNT, "zhangsan_alipay") if s in masked], masked
        assert "'id': 'b-1'" in mask_text(repr({"buyer": buyer}))  # ids stay: they are what a line is about

    def test_structured_values_are_masked_by_key(self) -> None:
        data = {
            "buyer": {"id": "b-1", "name": NAME, "phone": int(PHONE), "address": ADDRESS},
            "payee": {"alipay_account": ACCOUNT, "name": NAME},
            "payee_account": "2088123456781234",
            "payee_name": "Zhang San",
            "receiver_mobile": "+86 138 1234 5678",
            "lines": [{"name": "纯棉T恤", "note": "call 138-1234-5678"}],
            "api_key": "ask_secret",
            "filename": "cashback.csv",
            "order_id": "o-1",
        }
        assert mask_value("data", data) == {
            "buyer": {"id": "b-1", "name": "张*", "phone": "138****5678", "address": "浙江省杭州市***"},
            "payee": {"alipay_account": "zh***@example.com", "name": "张*"},
            "payee_account": "2088********1234",
            "payee_name": "Z***",
            "receiver_mobile": "+86 138****5678",
            "lines": [{"name": "纯*", "note": "call 138****5678"}],
            "api_key": "as***",
            "filename": "cashback.csv",
            "order_id": "o-1",
        }
        assert mask_value("buyer", NAME) == "张*" and mask_value("phone", "12345") == "123***"


# What PostgreSQL, asyncpg, SQLAlchemy and pydantic put into an error's text.
DATABASE_ERRORS = [
    f"asyncpg.exceptions.UniqueViolationError: duplicate key value violates unique constraint "
    f"\"orders_phone\"\nDETAIL:  Key ((buyer ->> 'phone'::text))=({PHONE}) already exists.",
    f"DETAIL:  Key (alipay_account, name)=({ACCOUNT}, {NAME}) already exists.",
    f"DETAIL:  Failing row contains (o-1, shop-a, {NAME}, {PHONE}, {ADDRESS}, null).",
    f"asyncpg.exceptions.DataError: invalid input for query argument $3: '{NAME} (x)' ('str' object cannot "
    "be interpreted as an integer)",
    "invalid input for query argument $2 in element #7 of executemany() sequence: 'zhangsan_alipay' "
    "(expected str, got int)",
    f"(sqlite3.IntegrityError) UNIQUE constraint failed: payouts.payee_account\n[SQL: INSERT INTO payouts "
    f"VALUES (?, ?)]\n[parameters: ('zhangsan_alipay', '{NAME}', '{ADDRESS}')]\n(Background on this error)",
    "1 validation error for Payee\nname\n  String should have at most 100 characters [type=string_too_long, "
    f"input_value='{NAME}{NAME}', input_type=str]",
]


class TestErrorTexts:
    @pytest.mark.parametrize("text", DATABASE_ERRORS)
    def test_values_the_database_or_a_validator_quotes_are_masked(self, text: str) -> None:
        masked = mask_text(text)
        assert not [s for s in (NAME, PHONE, "文三路", ACCOUNT, "zhangsan_alipay") if s in masked], masked
        assert "***" in masked or "hidden" in masked

    def test_what_the_error_is_about_stays(self) -> None:
        masked = mask_text(DATABASE_ERRORS[0])
        assert 'duplicate key value violates unique constraint "orders_phone"' in masked
        assert "=(***) already exists." in masked
        assert mask_text(DATABASE_ERRORS[3]).endswith(
            "$3: *** ('str' object cannot be interpreted as an integer)"
        )

    async def test_engines_never_put_statement_parameters_into_errors(self, tmp_path: Path) -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
        payees = Table(
            "payees", MetaData(), Column("account", String, primary_key=True), Column("name", String)
        )
        try:
            async with engine.begin() as conn:
                await conn.run_sync(payees.metadata.create_all)
                await conn.execute(insert(payees).values(account=ACCOUNT, name=NAME))
            with pytest.raises(Exception) as raised:
                async with engine.begin() as conn:
                    await conn.execute(insert(payees).values(account=ACCOUNT, name=NAME))
        finally:
            await engine.dispose()
        assert "UNIQUE constraint failed" in str(raised.value)
        assert ACCOUNT not in str(raised.value) and NAME not in str(raised.value)

    def test_a_logged_traceback_carries_no_buyer_data(self) -> None:
        try:
            try:
                raise ValueError(f"DETAIL:  Key (phone)=({PHONE}) already exists.")
            except ValueError as exc:
                buyer = {"name": NAME, "address": ADDRESS}
                raise RuntimeError(f"cannot save buyer {buyer}, payee {ACCOUNT}") from exc
        except RuntimeError:
            record = logging.LogRecord(
                "t",
                logging.ERROR,
                __file__,
                1,
                "unhandled error for %s",
                ("+86 138 1234 5678",),
                sys.exc_info(),
            )
        record.data = {"buyer": {"name": NAME, "phone": PHONE}}
        line = JsonFormatter().format(record)
        assert not [s for s in (NAME, PHONE, "1234", "文三路", ACCOUNT) if s in line], line
        parsed = json.loads(line)
        assert parsed["message"] == "unhandled error for +86 138****5678"
        assert "RuntimeError: cannot save buyer" in parsed["error"] and "ValueError" in parsed["error"]


# ------------------------------------------------------------------ dead letters

payees_metadata = MetaData()
payees = Table(
    "payees",
    payees_metadata,
    Column("account", String, primary_key=True),
    Column("name", String),
    Column("phone", String),
)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(payees_metadata.create_all)
        await conn.run_sync(lambda c: InboxEntry.__table__.create(c))  # type: ignore[attr-defined]
    yield session_factory(engine)
    await engine.dispose()


def approval(n: int, payee: dict[str, str]) -> bytes:
    return CloudEvent(
        id=f"evt-{n}-{uuid.uuid4().hex[:6]}",
        source="/test",
        type="test.approved.v1",
        subject=f"cb-{n}",
        time=datetime.now(UTC),
        data={"payee": payee},
    ).to_bytes()


class TestDeadLetters:
    async def test_a_parked_events_error_lines_and_listing_show_no_payee(
        self, bus: Bus, sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        """The second approval to the same payee fails on a unique key: the database's error (which would
        quote the row) goes into the DLQ header, the log and `dlq list`, each without the payee."""
        caplog.set_level(logging.INFO)
        topic, _ = topic_names(bus)
        payee = {"account": ACCOUNT, "name": NAME, "phone": "+86 138-1234-5678"}

        async def pay(session: AsyncSession, evt: CloudEvent) -> None:
            await session.exec(insert(payees).values(**evt.data["payee"]))  # type: ignore[call-overload]

        await bus.publish_batch(
            [OutRecord(topic, "k", approval(1, payee)), OutRecord(topic, "k", approval(2, payee))]
        )
        runner = ConsumerRunner(
            bus=bus,
            sessions=sessions,
            clock=SystemClock(),
            group="g-leaks",
            topics=[topic],
            handlers={"test.approved.v1": pay},
            max_attempts=2,
            backoff=0.01,
        )
        runner.start()
        try:
            for _ in range(400):
                if runner.dead_lettered:
                    break
                await asyncio.sleep(0.05)
        finally:
            await runner.stop()
        assert runner.dead_lettered == 1
        secrets = (ACCOUNT, NAME, "1234")

        lines = [JsonFormatter().format(r) for r in caplog.records]
        assert any("event parked on" in line and "IntegrityError" in line for line in lines)
        assert not [line for line in lines if any(s in line for s in secrets)]

        dlq = topic_module.dlq(topic)
        consumer = await bus.consumer(f"g-read-{uuid.uuid4().hex[:6]}", [dlq])
        try:
            parked: list[Record] = []
            for _ in range(100):
                if parked := await consumer.fetch(timeout_ms=200):
                    break
        finally:
            await consumer.close()
        error = dict(parked[0].headers)["error"].decode()
        assert "UNIQUE constraint failed" in error and not [s for s in secrets if s in error], error

        listed = json.dumps(await deadletters.list_parked(bus, topic, wait=3), ensure_ascii=False)
        assert "UNIQUE constraint failed" in listed and not [s for s in secrets if s in listed], listed

    def test_a_listing_masks_what_an_older_parking_left_in_its_headers(self) -> None:
        record = Record(
            "t.dlq",
            0,
            5,
            "cb-1",
            approval(1, {"account": ACCOUNT, "name": NAME}),
            (
                ("error", f"ValueError: payee {{'alipay_account': '{ACCOUNT}', 'name': '{NAME}'}}".encode()),
                ("consumer_group", b"payout-worker"),
            ),
        )
        described = deadletters.describe(record)
        assert (
            described["error"] == "ValueError: payee {'alipay_account': 'zh***@example.com', 'name': '张*'}"
        )
        assert described["consumer_group"] == "payout-worker" and described["key"] == "cb-1"


# ------------------------------------------------------------------ 404s


class TestNotFound:
    @pytest.mark.parametrize("what", ["order", "case", "cashback task", "parcel", "payout"])
    def test_another_shops_thing_answers_exactly_as_a_missing_one(self, what: str) -> None:
        key = Principal(key_id="k", name="k", roles=frozenset(Role), shops=frozenset({"shop-b"}))
        with pytest.raises(Problem) as hidden:
            key.require_shop("shop-a", hide=True, what=what, ident="x-1")
        assert hidden.value.body() == not_found(what, "x-1").body()
        assert hidden.value.status == 404 and hidden.value.detail == f"no {what} 'x-1' here"

    def test_without_hide_another_shop_is_403(self) -> None:
        key = Principal(key_id="k", name="k", roles=frozenset(Role), shops=frozenset({"shop-b"}))
        with pytest.raises(Problem) as refused:
            key.require_shop("shop-a", what="order", ident="x-1")
        assert refused.value.status == 403
        key.require_shop("shop-b", hide=True, what="order", ident="x-1")  # its own: no error


# ------------------------------------------------------------------ CSV


class TestCsvCells:
    @pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
    def test_a_cell_a_spreadsheet_would_run_is_quoted(self, start: str) -> None:
        assert protect_cell(start + 'HYPERLINK("http://x")') == "'" + start + 'HYPERLINK("http://x")'

    @pytest.mark.parametrize("text", ["张三", "12.00", "2026-11-05", "a=b", " =1", "o-1", ""])
    def test_other_cells_are_unchanged(self, text: str) -> None:
        assert protect_cell(text) == text

    def test_an_export_protects_every_column_and_list(self) -> None:
        rows: list[dict[str, Any]] = [
            {"a": "=1+2", "b": "-cmd|' /C calc'!A0", "c": ["@SUM(A1)", "x"], "d": "\tTAB", "e": "\rCR"},
            {"a": "+86 138", "b": "plain", "c": None, "d": 12, "e": "张三"},
        ]
        response = register_response(rows, ["a", "b", "c", "d", "e"], "csv", "r")
        read = list(csv.DictReader(io.StringIO(bytes(response.body).decode("utf-8-sig"))))
        assert read[0] == {
            "a": "'=1+2",
            "b": "'-cmd|' /C calc'!A0",
            "c": "'@SUM(A1);x",
            "d": "'\tTAB",
            "e": "'\rCR",
        }
        assert read[1] == {"a": "'+86 138", "b": "plain", "c": "", "d": "12", "e": "张三"}
