"""Time-ordered ids, so that sorting by id is sorting by creation (cursor pagination)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two digits, 10 bits, at a time
_SHIFTS = range(120, -1, -10)  # an id's 130 bits: 50 of milliseconds, then 80 random


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 random chars (a lower-case ULID)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis << 80 | int.from_bytes(os.urandom(10), 'big'))}"
