"""Inputs that used to answer 5xx (issue 11, item 5), at the level of the shared types: money within what
the columns hold and exact in both databases, times that convert to UTC, text without NUL, bodies within
a limit however they are sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aftersales_shared.fields import Day, Instant, NulFree
from aftersales_shared.money import MAX_AMOUNT, Money, MoneyOut, MoneyType
from aftersales_shared.problems import PROBLEM_JSON
from aftersales_shared.web import configure_app
from aftersales_testing import fresh_postgres_database
from fastapi import FastAPI, Request, UploadFile
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MONEY: TypeAdapter[Decimal] = TypeAdapter(Money)
MONEY_OUT: TypeAdapter[Decimal] = TypeAdapter(MoneyOut)
INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)
DAY: TypeAdapter[date] = TypeAdapter(Day)


class TestMoney:
    @pytest.mark.parametrize(
        "raw",
        [
            "10000000000000000000",  # 10^19 as a JSON integer
            "12345678901234567",
            "-10000000000000000000",
            "1" + "0" * 5000,  # more digits than Python converts to text
            "1e400",  # a float: infinite
            "1e308",
            "1.5",
            "NaN",  # Python's json module reads these as floats
            "Infinity",
            '"NaN"',
            '"Infinity"',
            '"-Infinity"',
            '"1e400"',
            '"1E+3"',
            '"10000000000.00"',  # over NUMERIC(12, 2)
            '"1000000.01"',  # over MAX_AMOUNT
            '"-1000000.01"',
            '"0.001"',
            "true",
            "[]",
        ],
    )
    def test_what_is_not_an_amount_a_service_accepts_is_a_validation_error(self, raw: str) -> None:
        with pytest.raises(ValidationError):
            MONEY.validate_json(raw)
        try:
            value = json.loads(raw)
        except ValueError:  # too many digits for the json module itself: a 400 before any model
            value = 10**5000
        with pytest.raises(ValidationError):
            MONEY.validate_python(value)

    @pytest.mark.parametrize("raw", ['"1000000.00"', '"-1000000.00"', "1000000", '"0.01"', '"129"'])
    def test_up_to_the_maximum_is_accepted_exactly(self, raw: str) -> None:
        assert MONEY.validate_python(json.loads(raw)) == Decimal(json.loads(raw))
        assert MONEY.validate_json(raw).as_tuple().exponent == -2

    def test_a_reported_sum_may_pass_the_maximum(self) -> None:
        total = MAX_AMOUNT * 200
        assert MONEY_OUT.validate_python(total) == total
        assert MONEY_OUT.dump_json(total) == b'"200000000.00"'
        with pytest.raises(ValidationError):
            MONEY.validate_python(total)
        for raw in ("NaN", "1e400", "0.001"):
            with pytest.raises(ValidationError):
                MONEY_OUT.validate_python(raw)


class TestTimes:
    @pytest.mark.parametrize(
        "raw",
        [
            "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
            "9999-12-31T23:59:59-12:00",  # after year 9999 in UTC
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
            "2100-01-01T08:00:00+08:00",
            "2026-11-01T10:00:00",  # no offset
        ],
    )
    def test_out_of_range_or_naive_is_refused_without_overflowing(self, raw: str) -> None:
        with pytest.raises(ValidationError):
            INSTANT.validate_python(raw)

    @pytest.mark.parametrize(
        "raw", ["2000-01-01T00:00:00Z", "2099-12-31T11:59:59-12:00", "2026-11-01T10:00+08:00"]
    )
    def test_within_range_is_accepted_and_converts_to_utc(self, raw: str) -> None:
        assert INSTANT.validate_python(raw).astimezone(UTC).year in range(2000, 2101)

    @pytest.mark.parametrize("raw", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"])
    def test_days_a_day_cannot_be_added_to_are_refused(self, raw: str) -> None:
        with pytest.raises(ValidationError):
            DAY.validate_python(raw)
        assert DAY.validate_python("2099-12-31") == date(2099, 12, 31)


class Inner(NulFree):
    name: str


class Outer(NulFree):
    description: str | None = None
    tags: list[str] = []
    inner: Inner | None = None
    data: dict[str, Any] = {}


class TestNul:
    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"description": "坏了\x00"}, ("description",)),
            ({"tags": ["ok", "b\x00d"]}, ("tags", 1)),
            ({"inner": {"name": "\x00"}}, ("inner", "name")),
            ({"data": {"note": {"deep": "a\x00"}}}, ("data", "note", "deep")),
            ({"data": {"k\x00": 1}}, ("data", "k\\u0000")),  # a key: named without its NUL
        ],
    )
    def test_a_nul_anywhere_is_refused_naming_where(self, body: dict[str, Any], loc: tuple[Any, ...]) -> None:
        with pytest.raises(ValidationError) as refused:
            Outer.model_validate(body)
        (error,) = refused.value.errors()
        assert (error["type"], error["loc"]) == ("nul_character", loc)
        with pytest.raises(ValidationError):
            Outer.model_validate_json(json.dumps(body))

    def test_text_without_nul_passes(self) -> None:
        body = {"description": "颜色不对 \\u0000 as text", "tags": ["a"], "inner": {"name": "张三"}}
        assert Outer.model_validate(body).model_dump(exclude_defaults=True) == body

    def test_the_check_leaves_an_iterator_for_the_field(self) -> None:
        """The check reads the value without consuming it: a list given as a generator keeps its items."""
        assert Outer.model_validate({"tags": (t for t in ["a", "b"])}).tags == ["a", "b"]


# ---------------------------------------------------------------- money columns


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        the_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/money.db")
        yield the_engine
        await the_engine.dispose()
        return
    async with fresh_postgres_database("money_t") as url:
        the_engine = create_async_engine(url)
        yield the_engine
        await the_engine.dispose()


AMOUNTS = Table(
    "amounts",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("amount", MoneyType(), nullable=True),
)


class TestMoneyColumns:
    async def test_amounts_round_trip_exactly_and_sum_exactly(self, engine: AsyncEngine) -> None:
        values = [Decimal("9999999999.99"), MAX_AMOUNT, Decimal("0.01"), Decimal("0.10"), Decimal("-0.29")]
        values += [Decimal("0.10")] * 1000 + [None]
        async with engine.begin() as conn:
            await conn.run_sync(AMOUNTS.metadata.create_all)
            await conn.execute(insert(AMOUNTS), [{"amount": v} for v in values])
        async with engine.connect() as conn:
            read = list((await conn.execute(select(AMOUNTS.c.amount).order_by(AMOUNTS.c.id))).scalars())
            total = (await conn.execute(select(func.sum(AMOUNTS.c.amount)))).scalar_one()
            over = (
                await conn.execute(select(func.count()).where(AMOUNTS.c.amount > Decimal("0.10")))
            ).scalar_one()
        assert read == values
        assert all(v is None or v.as_tuple().exponent == -2 for v in read)
        assert total == sum((v for v in values if v is not None), Decimal(0)) == Decimal("10001000099.81")
        assert isinstance(total, Decimal) and over == 2

    async def test_in_sqlite_cents_are_stored_as_integers(self, tmp_path: Path) -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/cents.db")
        try:
            async with engine.begin() as conn:
                await conn.run_sync(AMOUNTS.metadata.create_all)
                # beyond NUMERIC(12, 2), and beyond what a float holds: SQLite's NUMERIC read it back changed
                await conn.execute(insert(AMOUNTS), [{"amount": Decimal("12345678901234567.00")}])
                raw = (await conn.execute(text("SELECT typeof(amount), amount FROM amounts"))).one()
                read = (await conn.execute(select(AMOUNTS.c.amount))).scalar_one()
        finally:
            await engine.dispose()
        assert tuple(raw) == ("integer", 1234567890123456700)
        assert read == Decimal("12345678901234567.00")


# ---------------------------------------------------------------- body limit


class Body(BaseModel):
    text: str


def limited_app(limit: int = 2048, uploads: int = 8192) -> FastAPI:
    app = FastAPI()
    configure_app(app, "limit-test", limit, {"/upload": uploads})
    app.state.read = 0

    @app.post("/json")
    async def json_body(body: Body) -> dict[str, int]:
        return {"length": len(body.text)}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        async for chunk in request.stream():
            app.state.read += len(chunk)
        return {"read": app.state.read}

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict[str, int]:
        return {"size": len(await file.read())}

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def assert_413(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "body_too_large" and response.json()["limit"] == limit


class TestBodyLimit:
    async def test_a_declared_length_over_the_limit_is_413_before_reading(self) -> None:
        app = limited_app()
        async with client(app) as c:
            assert_413(await c.post("/json", json={"text": "x" * 3000}), 2048)
            assert_413(await c.post("/raw", content=b"x" * 2049), 2048)
            assert (await c.post("/json", json={"text": "x" * 1000})).json() == {"length": 1000}
        assert app.state.read == 0

    async def test_a_chunked_body_is_counted_and_stops_being_read_past_the_limit(self) -> None:
        app = limited_app()
        sent = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal sent
            for _ in range(200_000):  # 200 MB if it were all read
                sent += 1024
                yield b"x" * 1024

        async with client(app) as c:
            for path in ("/raw", "/json"):
                sent = 0
                response = await c.post(path, content=endless(), headers={"Content-Type": "application/json"})
                assert "content-length" not in response.request.headers
                assert_413(response, 2048)
                assert sent <= 4 * 1024, f"{sent} bytes were pulled from the caller"
        assert app.state.read <= 2048

    async def test_a_chunked_body_within_the_limit_is_read(self) -> None:
        async def small() -> AsyncIterator[bytes]:
            for _ in range(2):
                yield b"x" * 1024

        async with client(limited_app()) as c:
            assert (await c.post("/raw", content=small())).json() == {"read": 2048}

    async def test_an_upload_path_has_its_own_limit(self) -> None:
        async with client(limited_app()) as c:
            accepted = await c.post("/upload", files={"file": ("a.bin", b"x" * 6000)})
            assert accepted.json() == {"size": 6000}
            assert_413(await c.post("/upload", files={"file": ("a.bin", b"x" * 9000)}), 8192)
            assert_413(await c.post("/raw", content=b"x" * 6000), 2048)
