"""When a failed delivery is tried again: the first retry within 10 seconds, then exponential back-off, for at
least 24 hours before the delivery is given up."""

from __future__ import annotations

from datetime import timedelta

FIRST_RETRY = timedelta(seconds=5)
FACTOR = 4
LONGEST_WAIT = timedelta(hours=6)
RETRIES = 10  # 5 s, 20 s, 80 s, 5 min 20 s, 21 min, 85 min, 5.7 h, 6 h, 6 h, 6 h: 25.6 h in all
CLAIM_LEASE = timedelta(seconds=60)  # a claimed delivery is due again this long after (a crashed sender)


def retry_delay(failed_attempts: int) -> timedelta | None:
    """The wait after the `failed_attempts`-th failed attempt in a row; None: give up."""
    if failed_attempts > RETRIES:
        return None
    return min(FIRST_RETRY * FACTOR ** (failed_attempts - 1), LONGEST_WAIT)


def succeeded(status_code: int) -> bool:
    return 200 <= status_code < 300
