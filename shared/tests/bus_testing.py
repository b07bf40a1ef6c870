"""Helpers for the bus tests."""

from __future__ import annotations

from aftersales_shared.bus import Bus


def topic_names(bus: Bus) -> tuple[str, str]:
    """Two topics of this test's own (fresh per Kafka test, so no test sees another's records)."""
    topics = getattr(bus, "topics", None)
    return (topics[0], topics[1]) if topics else ("test.a", "test.b")
