"""The Asia/Shanghai business calendar: public holidays and make-up working days (调休)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

import chinese_calendar

from .clock import SHANGHAI, as_utc

log = logging.getLogger(__name__)


class BusinessCalendar:
    """Working days from `chinese-calendar`; outside the years it covers, Monday to Friday
    minus the holidays the operator configured (warned once per year)."""

    def __init__(self, extra_holidays: Iterable[date] = ()) -> None:
        self._extra_holidays = frozenset(extra_holidays)
        self._warned: set[int] = set()

    def is_working_day(self, day: date) -> bool:
        if day in self._extra_holidays:
            return False
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning("holiday calendar does not cover %s; using Monday-Friday", day.year)
            return day.weekday() < 5

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
