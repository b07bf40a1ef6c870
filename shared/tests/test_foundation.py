"""The shared building blocks: calendar, money, masking, envelope, cursors, settings, keys."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import weakref
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from aftersales_shared import background
from aftersales_shared.app import keep_startup_objects_out_of_gc
from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import SHANGHAI
from aftersales_shared.events import CaseEvent, CloudEvent, envelope
from aftersales_shared.logging import JsonFormatter, log_context, mask_address, mask_phone
from aftersales_shared.money import Money
from aftersales_shared.pagination import decode_cursor, encode_cursor
from aftersales_shared.problems import Problem
from aftersales_shared.settings import ServiceSettings
from pydantic import BaseModel, ValidationError


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


class TestBusinessCalendar:
    calendar = BusinessCalendar()

    def test_national_day_is_off_and_the_make_up_saturday_works(self) -> None:
        assert not self.calendar.is_working_day(date(2026, 10, 1))
        assert not self.calendar.is_working_day(date(2026, 10, 7))
        assert self.calendar.is_working_day(date(2026, 10, 10))  # 调休: Saturday made a working day
        assert not self.calendar.is_working_day(date(2026, 11, 28))  # an ordinary Saturday

    def test_two_working_days_skip_the_holiday(self) -> None:
        due = self.calendar.add_working_days(local("2026-09-30T15:00"), 2)
        assert due == local("2026-10-09T15:00")

    def test_a_request_on_a_day_off_counts_from_the_next_working_morning(self) -> None:
        assert self.calendar.add_working_days(local("2026-11-28T20:00"), 1) == local("2026-12-01T09:00")

    def test_payout_cutoff_moves_to_the_next_working_day_after_1730(self) -> None:
        cutoff = time(17, 30)
        assert self.calendar.cutoff_for(local("2026-11-26T17:29:59"), cutoff) == local("2026-11-26T17:30")
        assert self.calendar.cutoff_for(local("2026-11-26T17:30"), cutoff) == local("2026-11-27T17:30")
        assert self.calendar.cutoff_for(local("2026-09-30T18:00"), cutoff) == local("2026-10-08T17:30")

    def test_years_the_package_does_not_cover_fall_back_to_weekdays_and_configured_holidays(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calendar = BusinessCalendar(extra_holidays=[date(2099, 1, 1)])
        with caplog.at_level(logging.WARNING):
            assert not calendar.is_working_day(date(2099, 1, 1))  # configured holiday, a Thursday
            assert calendar.is_working_day(date(2099, 1, 2))
            assert not calendar.is_working_day(date(2099, 1, 3))
            calendar.is_working_day(date(2099, 1, 5))
        assert sum("does not cover 2099" in r.getMessage() for r in caplog.records) == 1


class Priced(BaseModel):
    amount: Money


class TestMoney:
    def test_decimal_strings_round_trip_with_two_places(self) -> None:
        assert Priced(amount="129").amount == Decimal("129.00")
        assert Priced(amount="129.5").model_dump(mode="json") == {"amount": "129.50"}

    @pytest.mark.parametrize("bad", [12.5, "12.345", "abc", "NaN", "Infinity", True, "1e3", " 12.00", "+5"])
    def test_floats_sub_cents_and_garbage_are_refused(self, bad: object) -> None:
        with pytest.raises(ValidationError):
            Priced(amount=bad)


class TestMasking:
    def test_phone_numbers_are_masked_anywhere_in_a_line(self) -> None:
        assert mask_phone("call 13812345678 now") == "call 138****5678 now"
        assert (
            mask_phone("order 2026110113812345678") == "order 2026110113812345678"
        )  # part of a longer number

    def test_addresses_keep_only_the_region(self) -> None:
        assert mask_address("浙江省杭州市西湖区文三路 1 号") == "浙江省杭州市***"

    def test_log_lines_are_json_with_context_and_masked_buyer_data(self) -> None:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "buyer 13912345678 complained", None, None)
        record.case_id = "case_1"
        record.data = {
            "buyer": {"phone": "13912345678", "address": "上海市浦东新区世纪大道 100 号", "name": "李四"}
        }
        line = json.loads(JsonFormatter().format(record))
        assert line["message"] == "buyer 139****5678 complained"
        assert line["case_id"] == "case_1"
        assert line["data"]["buyer"]["phone"] == "139****5678"
        assert line["data"]["buyer"]["address"] == "上海市***"

    def test_lines_logged_inside_a_context_carry_its_ids_unless_they_set_their_own(self) -> None:
        def line(**extra: str) -> dict[str, str]:
            record = logging.makeLogRecord({"name": "t", "msg": "handled", "levelname": "INFO", **extra})
            return dict(json.loads(JsonFormatter().format(record)))

        with log_context(event_id="evt_1", tracking_no="SF1"), log_context(order_id="o-1", case_id=None):
            inside = line(tracking_no="SF2")
        assert (inside["event_id"], inside["order_id"], inside["tracking_no"]) == ("evt_1", "o-1", "SF2")
        assert "case_id" not in inside
        assert "event_id" not in line()  # the context ended with its block


class TestEnvelope:
    def test_cloudevents_structured_mode_round_trips(self) -> None:
        data = CaseEvent(
            case_id="c1",
            order_id="o1",
            shop_id="s1",
            remedy="refund_only",
            reason="other",
            status="open",
            action="open",
            amount=Decimal("10.00"),
            version=1,
        )
        event = envelope(
            source="/case-api",
            type="aftersales.case.opened.v1",
            subject="c1",
            data=data,
            at=local("2026-11-05T10:00"),
        )
        raw = json.loads(event.to_bytes())
        assert raw["specversion"] == "1.0" and raw["datacontenttype"] == "application/json"
        assert raw["data"]["amount"] == "10.00"
        assert CloudEvent.from_bytes(event.to_bytes()) == event


class TestCursor:
    def test_round_trip_and_garbage(self) -> None:
        assert decode_cursor(encode_cursor("case_01abc")) == "case_01abc"
        with pytest.raises(Problem) as refused:
            decode_cursor("%%%not-base64")
        assert refused.value.status == 400


@pytest.mark.usefixtures("no_kafka_environment")
class TestSettings:
    def test_production_refuses_a_dev_key_and_missing_infrastructure(self) -> None:
        with pytest.raises(ValidationError):
            ServiceSettings(environment="production", dev_api_key="dev")
        with pytest.raises(ValidationError):
            ServiceSettings(environment="production")

    def test_each_service_gets_its_own_database_on_the_server(self) -> None:
        settings = ServiceSettings(database_url="postgresql+asyncpg://u:p@db:5432/", database_name="case_api")
        assert settings.sqlalchemy_url == "postgresql+asyncpg://u:p@db:5432/case_api"


class TestBackgroundLoop:
    async def test_a_loop_that_fails_is_logged_counted_and_started_again(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setattr(background, "FIRST_PAUSE", 0.01)
        starts: list[int] = []
        running = asyncio.Event()

        class Flaky(background.BackgroundLoop):
            task_name = "flaky-loop"

            async def run(self) -> None:
                starts.append(len(starts))
                if len(starts) < 3:
                    raise RuntimeError(f"failure {len(starts)}")
                running.set()
                await asyncio.Event().wait()

        before = background.RESTARTS.labels("flaky-loop")._value.get()
        loop = Flaky()
        loop.start()
        try:
            await asyncio.wait_for(running.wait(), timeout=5)
        finally:
            await loop.stop()
        assert starts == [0, 1, 2]
        assert background.RESTARTS.labels("flaky-loop")._value.get() == before + 2
        failures = [r for r in caplog.records if r.name == background.__name__]
        assert [r.exc_info[1].args[0] for r in failures if r.exc_info and r.exc_info[1]] == [
            "failure 1",
            "failure 2",
        ]
        assert "flaky-loop failed; starting it again" in failures[0].getMessage()


class TestStartupObjectsOutOfCollections:
    def test_frozen_once_and_what_comes_later_is_still_freed(self) -> None:
        keep_startup_objects_out_of_gc()
        frozen = gc.get_freeze_count()
        assert frozen > 0

        class Node:
            other: Any = None

        cycle = Node()
        cycle.other = Node()
        cycle.other.other = cycle  # only a collection frees a cycle
        gone = weakref.ref(cycle)
        keep_startup_objects_out_of_gc()  # a second app in the same process: nothing more is frozen
        assert gc.get_freeze_count() == frozen
        del cycle
        gc.collect()
        assert gone() is None
