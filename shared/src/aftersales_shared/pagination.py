"""Cursor pagination over time-ordered ids."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel

from .problems import Problem

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        last_id = "\x00"
    # An id is short and has no NUL (which PostgreSQL text cannot hold): anything else is no cursor of ours.
    if "\x00" in last_id or len(last_id) > 64:
        raise Problem(400, "invalid_cursor", "Invalid cursor", "use the next_cursor of a previous page")
    return last_id


def next_cursor(rows: Sequence[object], limit: int, id_attr: str = "id") -> str | None:
    """The caller fetched limit + 1 rows: a next page exists when the extra one is there."""
    return encode_cursor(str(getattr(rows[limit - 1], id_attr))) if len(rows) > limit else None
