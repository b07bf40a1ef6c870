"""Cursor pagination over time-ordered ids, and the change feed's cursor over (updated_at, id)."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from .fields import ID_MAX_LENGTH, ID_PATTERN, within_range
from .problems import Problem

T = TypeVar("T")
# What a cursor holds, after a version mark: a page's last id, or a change feed's last (updated_at, id). A
# cursor of the wrong kind, or that is no cursor of ours at all, is a 400 rather than an empty page.
ID_MARK = "i1:"
POSITION_MARK = "u1:"
_ID = re.compile(ID_PATTERN)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _invalid() -> Problem:
    return Problem(400, "invalid_cursor", "Invalid cursor", "use the next_cursor of a previous page")


def _decode(cursor: str, mark: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise _invalid() from None
    if not text.startswith(mark):
        raise _invalid()
    return text.removeprefix(mark)


def _an_id(value: str) -> str:
    if len(value) > ID_MAX_LENGTH or not _ID.match(value):
        raise _invalid()
    return value


def encode_cursor(last_id: str) -> str:
    return _encode(ID_MARK + last_id)


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    return _an_id(_decode(cursor, ID_MARK))


def encode_position(updated_at: datetime, last_id: str) -> str:
    return _encode(f"{POSITION_MARK}{updated_at.isoformat()}|{last_id}")


def decode_position(cursor: str) -> tuple[datetime, str]:
    """A change feed's cursor: the (updated_at, id) its next page starts after."""
    at, _, last_id = _decode(cursor, POSITION_MARK).partition("|")
    try:
        updated_at = datetime.fromisoformat(at)
        if updated_at.tzinfo is None:
            raise ValueError("no offset")
        within_range(updated_at)
    except ValueError:
        raise _invalid() from None
    return updated_at, _an_id(last_id)


def next_cursor(rows: Sequence[object], limit: int, id_attr: str = "id") -> str | None:
    """The caller fetched limit + 1 rows: a next page exists when the extra one is there."""
    return encode_cursor(str(getattr(rows[limit - 1], id_attr))) if len(rows) > limit else None
