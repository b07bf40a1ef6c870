"""The Asia/Shanghai business calendar: public holidays and make-up working days (调休).

Where the days come from, first match wins:
1. single days the operator set: `<SERVICE>_EXTRA_WORKDAYS` (working) and `<SERVICE>_EXTRA_HOLIDAYS` (off);
2. the years of the operator's calendar file (`CALENDAR_FILE`, TOML): each year restates a State Council
   notice (国务院办公厅关于部分节假日安排的通知), its holidays and its make-up working days; every other day
   of that year works Monday to Friday;
3. `chinese-calendar`, for the years it covers;
4. Monday to Friday, warned once per year. `uncovered_days` tells how many of the coming days fall here:
   each service that counts working days warns at start and reports it as a metric.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Self

import chinese_calendar
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings

from .clock import SHANGHAI, Clock, as_utc

log = logging.getLogger(__name__)

COVERAGE_DAYS = 60
MAX_HOLIDAY_DAYS = 15  # the longest State Council holiday (Spring Festival) is 9 days: more is a typo
UNCOVERED = Gauge(
    "aftersales_business_calendar_uncovered_days",
    f"days of the next {COVERAGE_DAYS} (Asia/Shanghai) without holiday data: SLAs and cut-offs count "
    "Monday to Friday there; 0 when the calendar file or chinese-calendar covers them all",
    ["service"],
)


class Holiday(BaseModel):
    """One holiday of a notice: its name and its days off, from and to inclusive (放假调休)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=20)
    first: date = Field(alias="from")
    last: date = Field(alias="to")

    @model_validator(mode="after")
    def _span(self) -> Self:
        days = (self.last - self.first).days + 1
        if not 1 <= days <= MAX_HOLIDAY_DAYS:
            raise ValueError(
                f"{self.name}: from {self.first} to {self.last} is not 1 to {MAX_HOLIDAY_DAYS} days"
            )
        return self

    def days(self) -> set[date]:
        return {self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)}


class NoticeYear(BaseModel):
    """One year of the calendar file: the holidays, and the weekend days made working days (上班)."""

    model_config = ConfigDict(extra="forbid")

    holidays: list[Holiday] = Field(min_length=1)
    workdays: list[date] = []

    def off(self) -> set[date]:
        return set().union(*(h.days() for h in self.holidays))


def load_calendar_file(path: Path) -> dict[int, NoticeYear]:
    """The years of a calendar file, checked: every date in its year, a make-up working day on a weekend,
    no day both off and working. A ValueError names the file and what is wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"calendar file {path}: {exc}") from exc
    years: dict[int, NoticeYear] = {}
    for key, body in raw.items():
        if not (key.isdigit() and 2000 <= int(key) <= 2100):
            raise ValueError(f"calendar file {path}: [{key}] is not a year from 2000 to 2100")
        try:
            notice = NoticeYear.model_validate(body)
        except ValidationError as exc:
            raise ValueError(f"calendar file {path}, [{key}]: {exc}") from exc
        year, off = int(key), notice.off()
        problems = [f"{d} is not in {year}" for d in sorted(off | set(notice.workdays)) if d.year != year]
        problems += [
            f"make-up working day {d} is not a Saturday or Sunday" for d in notice.workdays if d.weekday() < 5
        ]
        problems += [f"{d} is both a holiday and a working day" for d in sorted(off & set(notice.workdays))]
        if problems:
            raise ValueError(f"calendar file {path}, [{key}]: " + "; ".join(problems))
        years[year] = notice
    return years


class BusinessCalendar:
    """Working days: the operator's days, then the calendar file's years, then `chinese-calendar`;
    outside all of them Monday to Friday (warned once per year)."""

    def __init__(
        self,
        extra_holidays: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        notices: Mapping[int, NoticeYear] | None = None,
    ) -> None:
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        self._notices = {year: (n.off(), frozenset(n.workdays)) for year, n in (notices or {}).items()}
        self._warned: set[int] = set()
        # chinese-calendar's answers, kept: it is slow, and a chunk of payouts asks it once per approval
        self._library_days: dict[date, bool] = {}

    def is_working_day(self, day: date) -> bool:
        if day in self._extra_workdays:
            return True
        if day in self._extra_holidays:
            return False
        if (notice := self._notices.get(day.year)) is not None:
            off, working = notice
            return day in working or (day.weekday() < 5 and day not in off)
        if (known := self._library_days.get(day)) is None:
            known = self._library_days[day] = self._library_working_day(day)
        return known

    def _library_working_day(self, day: date) -> bool:
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning("holiday calendar does not cover %s; using Monday-Friday", day.year)
            return day.weekday() < 5

    def covers(self, day: date) -> bool:
        """Whether holiday data (the calendar file or chinese-calendar) covers the day."""
        if day.year in self._notices:
            return True
        try:
            chinese_calendar.is_workday(day)
        except NotImplementedError:
            return False
        return True

    def uncovered_days(self, start: date, days: int = COVERAGE_DAYS) -> list[date]:
        """The days from `start` on (`days` of them) that no holiday data covers."""
        return [d for n in range(days) if not self.covers(d := start + timedelta(days=n))]

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        day += timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def working_day_on_or_after(self, day: date) -> date:
        return day if self.is_working_day(day) else self.next_working_day(day)

    def add_working_days(self, at: datetime, days: int) -> datetime:
        """The same local time `days` working days later (an SLA due time), counted from the
        next working day when `at` falls on a day off."""
        local = as_utc(at).astimezone(SHANGHAI)
        day = local.date()
        if not self.is_working_day(day):
            day = self.next_working_day(day)
            local = datetime.combine(day, time(9, 0), SHANGHAI)
        for _ in range(days):
            day = self.next_working_day(day)
        return datetime.combine(day, local.timetz())

    def cutoff_for(self, at: datetime, cutoff: time) -> datetime:
        """The payout cut-off that `at` falls before: today's if a working day and not past it,
        otherwise the next working day's."""
        local = as_utc(at).astimezone(SHANGHAI)
        day = local.date()
        if not self.is_working_day(day) or local.time() >= cutoff:
            day = self.next_working_day(day)
        return datetime.combine(day, cutoff, SHANGHAI)


def watch_coverage(calendar: BusinessCalendar, clock: Clock, service: str) -> None:
    """Warn now if the next 60 days are not all covered by holiday data, and report how many are not as
    `aftersales_business_calendar_uncovered_days` at every scrape."""

    def uncovered() -> list[date]:
        return calendar.uncovered_days(as_utc(clock.now()).astimezone(SHANGHAI).date())

    UNCOVERED.labels(service).set_function(lambda: len(uncovered()))
    if missing := uncovered():
        log.warning(
            "business calendar: no holiday data for %s to %s (%d of the next %d days); SLAs and payout "
            "cut-offs count Monday to Friday there. Add the State Council's notice to CALENDAR_FILE "
            "(docs/operations.md, Business calendar)",
            missing[0],
            missing[-1],
            len(missing),
            COVERAGE_DAYS,
        )


class CalendarSettings(BaseSettings):
    """The calendar settings of a service that counts working days. A bad file or setting stops the start."""

    extra_holidays: list[date] = []
    extra_workdays: list[date] = []
    calendar_file: Path | None = Field(None, validation_alias="CALENDAR_FILE")

    @model_validator(mode="after")
    def _check_calendar(self) -> Self:
        if both := sorted(set(self.extra_holidays) & set(self.extra_workdays)):
            raise ValueError(f"EXTRA_HOLIDAYS and EXTRA_WORKDAYS both name {', '.join(map(str, both))}")
        self.business_calendar()
        return self

    def business_calendar(self) -> BusinessCalendar:
        notices = load_calendar_file(self.calendar_file) if self.calendar_file else None
        return BusinessCalendar(self.extra_holidays, self.extra_workdays, notices)
