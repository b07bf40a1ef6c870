"""Field types every service's requests and events share, so that what is accepted is what the databases
can hold (issue 11, item 5): ids within their columns' width and pattern, times that convert to UTC, days a
day can be added to, and text without NUL characters (PostgreSQL `text` cannot hold one)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# Ids a caller chooses (orders, lines, shops): what case-api's request bodies take, and the columns' width.
ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
ID_MAX_LENGTH = 64
# Ids a service makes (ids.new_id: `case_…`, `cb_…`, `po_…`): the same pattern, and their columns' width.
RESOURCE_ID_PATTERN = ID_PATTERN
RESOURCE_ID_MAX_LENGTH = 40

OrderIdPath = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="an order id")
]
ResourceIdPath = Annotated[
    str, Path(min_length=1, max_length=RESOURCE_ID_MAX_LENGTH, pattern=RESOURCE_ID_PATTERN)
]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
ResourceIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=RESOURCE_ID_MAX_LENGTH, pattern=RESOURCE_ID_PATTERN)
]
NO_NUL_PATTERN = r"^[^\x00]*$"
TextQuery = Annotated[str | None, Query(min_length=1, max_length=ID_MAX_LENGTH, pattern=NO_NUL_PATTERN)]
"""A filter on a column of free text (a carrier's name, an order id another service sent)."""

# Times and days accepted: wide enough for any order, scan or report, narrow enough that converting to UTC
# or adding a day never overflows (0001-01-01T00:00:00+14:00 and 9999-12-31T23:59:59-12:00 did).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def within_range(value: datetime) -> datetime:
    """Refuse a time outside [EARLIEST, LATEST), looking at the year first so that nothing overflows."""
    if not EARLIEST.year - 1 <= value.year <= LATEST.year or not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {EARLIEST.date()} up to {LATEST.date()} (UTC)")
    return value


def day_within_range(value: date) -> date:
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(f"must be from {EARLIEST.date()} up to {LATEST.date()}")
    return value


Instant = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
"""A time with its UTC offset, from 2000 up to 2100 in UTC: what every request and event carrying a time
takes. The bounds are pydantic's own constraints, compared in its core without converting the time (so
without overflow) and without a call into Python: two of these are checked per tracking event (P3)."""
Day = Annotated[date, AfterValidator(day_within_range)]
"""A calendar day from 2000 up to 2100."""


Loc = tuple[str | int, ...]


def _nul_locations(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key).replace("\x00", "\\u0000")  # the location is echoed, maybe stored
            yield from _nul_locations(key, (*loc, name))
            yield from _nul_locations(item, (*loc, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nul_locations(item, (*loc, index))


def _holds_nul(value: Any) -> bool:
    """Whether any text in `value` holds a NUL: the common answer (no) without building locations."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_item_holds_nul(key) or _item_holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_item_holds_nul(item) for item in value)
    return False


def _item_holds_nul(item: Any) -> bool:
    return "\x00" in item if item.__class__ is str else _holds_nul(item)


class NulFree(BaseModel):
    """A request or event body whose text (at any depth) holds no NUL character: PostgreSQL text cannot
    store one, so it is refused here, naming the field, rather than failing in the database."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if not _holds_nul(data):
            return data
        errors = [
            InitErrorDetails(
                type=PydanticCustomError("nul_character", "text cannot contain a NUL character (\\u0000)"),
                loc=loc,
                input=text,
            )
            for loc, text in _nul_locations(data)
        ]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data
