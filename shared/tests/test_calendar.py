"""The business calendar after chinese-calendar's last year: the operator's State Council notices (a
checked TOML file), single holidays and make-up working days (调休), and the warning and the metric when the
coming 60 days have no holiday data."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from aftersales_shared.calendar import BusinessCalendar, CalendarSettings, load_calendar_file, watch_coverage
from aftersales_shared.clock import SHANGHAI, FrozenClock
from prometheus_client import REGISTRY
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

EXAMPLE_2026 = Path(__file__).resolve().parents[2] / "docs" / "calendar" / "2026.toml"

# A made-up year in the file's format (not a State Council notice): New Year's Day on a Friday with the
# weekend, a Spring Festival week with one make-up Sunday.
FILE_2027 = """
[2027]
holidays = [
  { name = "元旦", from = 2027-01-01, to = 2027-01-03 },
  { name = "春节", from = 2027-02-06, to = 2027-02-14 },
]
workdays = [2027-02-21]
"""


def calendar_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestCalendarFile:
    def test_the_2026_notice_gives_the_working_days_chinese_calendar_has(self) -> None:
        calendar = BusinessCalendar(notices=load_calendar_file(EXAMPLE_2026))
        days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
        assert [d for d in days if calendar.is_working_day(d) != chinese_calendar.is_workday(d)] == []
        assert not calendar.is_working_day(date(2026, 10, 7)) and calendar.is_working_day(date(2026, 10, 10))

    def test_a_year_the_package_lacks(self, tmp_path: Path) -> None:
        calendar = BusinessCalendar(notices=load_calendar_file(calendar_file(tmp_path, FILE_2027)))
        working = {d: calendar.is_working_day(d) for d in (date(2027, 2, 5), date(2027, 2, 8))}
        assert working == {date(2027, 2, 5): True, date(2027, 2, 8): False}  # Friday; a holiday Monday
        assert calendar.is_working_day(date(2027, 2, 21))  # the make-up Sunday
        assert not calendar.is_working_day(date(2027, 2, 20))  # an ordinary Saturday
        assert calendar.is_working_day(date(2027, 1, 4)) and not calendar.is_working_day(date(2027, 1, 3))
        # an SLA over Spring Festival: Friday 5 February + 2 working days = Tuesday 16 February
        due = calendar.add_working_days(datetime(2027, 2, 5, 10, tzinfo=SHANGHAI), 2)
        assert due == datetime(2027, 2, 16, 10, tzinfo=SHANGHAI)

    def test_the_file_wins_over_the_package_for_its_years(self, tmp_path: Path) -> None:
        text = '[2026]\nholidays = [{ name = "店庆", from = 2026-12-01, to = 2026-12-01 }]\n'
        calendar = BusinessCalendar(notices=load_calendar_file(calendar_file(tmp_path, text)))
        assert not calendar.is_working_day(date(2026, 12, 1))
        assert calendar.is_working_day(date(2026, 10, 8))  # the file's 2026 has no National Day

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            (
                '[2027]\nholidays = [{ name = "元旦", from = 2026-12-31, to = 2027-01-01 }]',
                "2026-12-31 is not in 2027",
            ),
            (
                '[2027]\nholidays = [{ name = "x", from = 2027-01-01, to = 2027-01-01 }]\n'
                "workdays = [2027-01-04]",
                "2027-01-04 is not a Saturday or Sunday",
            ),
            (
                '[2027]\nholidays = [{ name = "x", from = 2027-01-01, to = 2027-01-03 }]\n'
                "workdays = [2027-01-02]",
                "2027-01-02 is both a holiday and a working day",
            ),
            (
                '[2027]\nholidays = [{ name = "x", from = 2027-02-01, to = 2027-02-16 }]',
                "is not 1 to 15 days",
            ),
            (
                '[2027]\nholidays = [{ name = "x", from = 2027-02-02, to = 2027-02-01 }]',
                "is not 1 to 15 days",
            ),
            ('[2027]\nholidays = [{ name = "x", from = 2027-02-01, until = 2027-02-02 }]', "until"),
            ('[2027]\nholidays = [{ name = "x", from = "1 March", to = 2027-03-01 }]', "from"),
            ("[2027]\nholidays = []", "holidays"),
            ('[2027]\nholiday = [{ name = "x", from = 2027-01-01, to = 2027-01-01 }]', "holiday"),
            (
                '[1999]\nholidays = [{ name = "x", from = 1999-01-01, to = 1999-01-01 }]',
                "[1999] is not a year",
            ),
            ("[2027\n", "calendar file"),
        ],
        ids=[
            "other-year",
            "weekday-workday",
            "both",
            "16-days",
            "backwards",
            "unknown-key",
            "not-a-date",
            "no-holidays",
            "misspelt",
            "bad-year",
            "not-toml",
        ],
    )
    def test_a_wrong_file_is_refused_saying_why(self, tmp_path: Path, text: str, says: str) -> None:
        with pytest.raises(ValueError, match="calendar file") as refused:
            load_calendar_file(calendar_file(tmp_path, text))
        assert says in str(refused.value)

    def test_fifteen_days_is_the_longest_holiday(self, tmp_path: Path) -> None:
        text = '[2027]\nholidays = [{ name = "x", from = 2027-02-01, to = 2027-02-15 }]'
        assert len(load_calendar_file(calendar_file(tmp_path, text))[2027].off()) == 15

    def test_a_missing_file_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="calendar file"):
            load_calendar_file(tmp_path / "nowhere.toml")


class TestOperatorDays:
    def test_make_up_working_days_and_holidays_from_settings(self) -> None:
        calendar = BusinessCalendar(extra_holidays=[date(2027, 1, 1)], extra_workdays=[date(2027, 1, 9)])
        assert not calendar.is_working_day(date(2027, 1, 1))  # a Friday off
        assert calendar.is_working_day(date(2027, 1, 9))  # a Saturday worked
        assert not calendar.is_working_day(date(2027, 1, 10))  # an ordinary Sunday
        assert calendar.next_working_day(date(2026, 12, 31)) == date(2027, 1, 4)

    def test_an_operator_day_wins_over_the_package(self) -> None:
        calendar = BusinessCalendar(extra_workdays=[date(2026, 10, 3)])
        assert calendar.is_working_day(date(2026, 10, 3))


class Settings(CalendarSettings):
    model_config = SettingsConfigDict(env_prefix="TEST_SVC_")


class TestSettings:
    def test_days_and_file_from_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_SVC_EXTRA_WORKDAYS", '["2027-03-06"]')
        monkeypatch.setenv("CALENDAR_FILE", str(calendar_file(tmp_path, FILE_2027)))
        calendar = Settings().business_calendar()
        assert calendar.is_working_day(date(2027, 3, 6)) and not calendar.is_working_day(date(2027, 2, 8))

    def test_a_bad_file_stops_the_start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CALENDAR_FILE", str(calendar_file(tmp_path, "[2027]\nworkdays = [2027-01-09]")))
        with pytest.raises(ValidationError, match="holidays"):
            Settings()

    def test_a_day_both_off_and_working_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TEST_SVC_EXTRA_HOLIDAYS", '["2027-01-09"]')
        monkeypatch.setenv("TEST_SVC_EXTRA_WORKDAYS", '["2027-01-09"]')
        with pytest.raises(ValidationError, match="both name 2027-01-09"):
            Settings()

    def test_a_bad_day_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TEST_SVC_EXTRA_WORKDAYS", '["2027-02-30"]')
        with pytest.raises(ValidationError, match="extra_workdays"):
            Settings()


def uncovered(service: str) -> float | None:
    return REGISTRY.get_sample_value("aftersales_business_calendar_uncovered_days", {"service": service})


class TestCoverage:
    @pytest.mark.parametrize(
        ("start", "missing"),
        [(date(2026, 11, 2), 0), (date(2026, 11, 3), 1), (date(2026, 11, 30), 28), (date(2027, 3, 1), 60)],
    )
    def test_days_without_holiday_data(self, start: date, missing: int) -> None:
        assert len(BusinessCalendar().uncovered_days(start)) == missing

    def test_the_file_covers_its_years(self, tmp_path: Path) -> None:
        calendar = BusinessCalendar(notices=load_calendar_file(calendar_file(tmp_path, FILE_2027)))
        assert calendar.uncovered_days(date(2026, 11, 30)) == []
        assert calendar.uncovered_days(date(2027, 12, 31), 2) == [date(2028, 1, 1)]

    def test_single_days_do_not_cover_a_year(self) -> None:
        calendar = BusinessCalendar(extra_holidays=[date(2027, 1, 1)])
        assert date(2027, 1, 1) in calendar.uncovered_days(date(2026, 12, 31))

    def test_a_warning_at_start_and_a_metric_that_follows_the_clock(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = FrozenClock(datetime(2026, 11, 30, 10, tzinfo=SHANGHAI))
        with caplog.at_level(logging.WARNING, logger="aftersales_shared.calendar"):
            watch_coverage(BusinessCalendar(), clock, "calendar-test")
        (warning,) = [r.getMessage() for r in caplog.records]
        assert "2027-01-01 to 2027-01-28 (28 of the next 60 days)" in warning and "CALENDAR_FILE" in warning
        assert uncovered("calendar-test") == 28
        clock.set(datetime(2026, 10, 1, tzinfo=SHANGHAI))
        assert uncovered("calendar-test") == 0

    def test_no_warning_when_covered(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        calendar = BusinessCalendar(notices=load_calendar_file(calendar_file(tmp_path, FILE_2027)))
        clock = FrozenClock(datetime(2026, 11, 30, 10, tzinfo=SHANGHAI))
        with caplog.at_level(logging.WARNING, logger="aftersales_shared.calendar"):
            watch_coverage(calendar, clock, "calendar-test-covered")
        assert caplog.records == [] and uncovered("calendar-test-covered") == 0
