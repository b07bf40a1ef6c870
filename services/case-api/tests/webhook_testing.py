"""Receiving webhooks in tests: the official `standardwebhooks` verifier, with its clock at the attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest.mock import patch

from standardwebhooks import Webhook


def verify(secret: str, headers: dict[str, str], body: bytes, at: datetime | None = None) -> object:
    """What a receiver does (its tolerance of 5 minutes measured from `at`, the attempt's own time by
    default: the tests' clock is frozen, the verifier reads the wall clock)."""
    at = at or datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    with patch("standardwebhooks.webhooks.datetime") as clock:
        clock.now.return_value = at
        clock.fromtimestamp.side_effect = datetime.fromtimestamp
        return Webhook(secret).verify(body, headers)
