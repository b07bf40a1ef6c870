from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_testing import kafka_broker


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """The same tests on the embedded log and on the real broker."""
    if request.param == "embedded":
        the_bus: Bus = EmbeddedBus(tmp_path / "events.db")
    else:
        suffix = uuid.uuid4().hex[:8]
        the_bus = kafka_broker().bus(  # the admin: these topics are the test's own
            client_id=f"test-{suffix}",
            partitions=3,
            topics=["a", "b"],
            topic_prefix=f"test.{suffix}.",
        )
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


@pytest.fixture
def no_kafka_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `eval "$(kafka.sh env)"` exported must not decide these settings."""
    for name in ("BOOTSTRAP_SERVERS", "SECURITY_PROTOCOL", "SASL_MECHANISM", "USERNAME", "PASSWORD"):
        for prefix in ("", "CASE_API_", "LOGISTICS_WATCHER_", "PAYOUT_WORKER_"):
            monkeypatch.delenv(f"{prefix}KAFKA_{name}", raising=False)
    for name in ("CAFILE", "CERTFILE", "KEYFILE"):
        monkeypatch.delenv(f"KAFKA_SSL_{name}", raising=False)
