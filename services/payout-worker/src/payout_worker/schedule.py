"""When payouts are due and when batches close: pure functions of the business calendar and a time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from aftersales_shared.calendar import BusinessCalendar
from aftersales_shared.clock import SHANGHAI, as_utc


def due_at(approved_at: datetime, calendar: BusinessCalendar, cutoff: time) -> datetime:
    """R-CASHBACK: approved on a working day before the cut-off → paid by that cut-off; otherwise by
    the next working day's."""
    return calendar.cutoff_for(approved_at, cutoff).astimezone(UTC)


def open_window(now: datetime, calendar: BusinessCalendar, cutoff: time) -> datetime | None:
    """Today's cut-off while a working day's payouts are still collecting, else None. Full batches are
    sent during the window; after the cut-off, new approvals wait for the next working day."""
    local = as_utc(now).astimezone(SHANGHAI)
    if not calendar.is_working_day(local.date()) or local.time() >= cutoff:
        return None
    return datetime.combine(local.date(), cutoff, SHANGHAI).astimezone(UTC)


def backoff(unresolved_for: timedelta, base: float, cap: float) -> timedelta:
    """How long an ambiguous payout waits before the next query: as long as it has been unresolved
    (so the waits double), at least `base`, at most `cap`."""
    return timedelta(seconds=min(cap, max(base, unresolved_for.total_seconds())))
