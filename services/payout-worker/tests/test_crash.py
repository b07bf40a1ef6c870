"""Crash tests: the worker runs as a process, is killed with SIGKILL between submitting a batch and
recording the answer, and is started again. The simulator's record must show each out_biz_no executed
exactly once, and the ledger must agree (R-CASHBACK-ONCE) — on the embedded log and SQLite, and on
Apache Kafka and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.clock import SystemClock
from aftersales_shared.testing_kafka import BrokerAccess
from aftersales_testing import fresh_postgres_database, kafka_broker
from payout_testing import (
    BIN,
    TRUSTED,
    Simulator,
    approved,
    assert_paid_once,
    free_port,
    publish,
    start_simulator,
    wait_http,
)

N = 20
KEY = "dev_crash_test_key"


@dataclass
class WorkerProcess:
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        """Its output, every run appended, to say why a wait timed out."""
        return Path(self.env["DATA_DIR"]) / "payout-worker.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "payout-worker"), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_http(f"http://127.0.0.1:{self.port}/healthz", timeout=60)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-6000:]
        raise AssertionError(f"timed out waiting for {what}; the worker's output ends:\n{tail}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown, no cleanup
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"http://127.0.0.1:{self.port}{path}",
            timeout=10,
            headers={"Authorization": f"Bearer {KEY}"},
            **kwargs,
        )

    def payouts(self) -> list[SimpleNamespace]:
        items = self.call("GET", "/v1/payouts", params={"limit": 200}).json()["items"]
        return [SimpleNamespace(**item) for item in items]


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    """A simulator of the test's own: a killed worker leaves requests hanging in it."""
    yield from start_simulator(tmp_path / "simulator.db")


def worker_env(tmp_path: Path, simulator: Simulator, **extra: str) -> dict[str, str]:
    port = free_port()
    # Not the shell's broker or database (`kafka.sh env` exports KAFKA_*): the embedded test stays embedded.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_") and k != "DATABASE_URL"}
    return {
        **inherited,
        "DATA_DIR": str(tmp_path),
        "DEV_API_KEY": KEY,
        "PAYOUT_WORKER_PORT": str(port),
        "PAYOUT_WORKER_SIMULATOR_URL": simulator.url,
        "PAYOUT_WORKER_PROVIDER_TIMEOUT_SECONDS": "8",
        "PAYOUT_WORKER_RECOVER_AFTER_SECONDS": "9",
        "PAYOUT_WORKER_RETRY_BASE_SECONDS": "0.5",
        "PAYOUT_WORKER_TICK_SECONDS": "0.2",
        "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS": TRUSTED["approval_public_keys"],
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def broker_worker_env(
    tmp_path: Path, simulator: Simulator, broker: BrokerAccess, url: str, prefix: str
) -> dict[str, str]:
    """A worker process as itself on the broker, in the topic namespace `prefix`, on PostgreSQL at `url`."""
    return worker_env(
        tmp_path,
        simulator,
        DATABASE_URL=url,
        PAYOUT_WORKER_DATABASE_NAME=url.rsplit("/", 1)[1],
        KAFKA_TOPIC_PREFIX=prefix,
        **broker.service_env("payout-worker"),
    )


async def crash_and_recover(
    tmp_path: Path, simulator: Simulator, bus: Bus, env: dict[str, str], moment: str
) -> None:
    worker = WorkerProcess(env, int(env["PAYOUT_WORKER_PORT"]))
    tasks = [f"cb-{uuid.uuid4().hex[:10]}" for _ in range(N)]
    if moment == "in_flight":  # killed while the provider is still working on the batch
        simulator.behave(latency_ms=3000)
    else:  # the provider executed the batch; its answer never reaches the worker
        simulator.behave(fault="timeout", fault_executes=True, hang_seconds=30)
    try:
        worker.start()
        await publish(bus, [approved(t, when=SystemClock().now()) for t in tasks])
        worker.wait_for(lambda: len(worker.payouts()) == N, "the approvals to be consumed")
        assert worker.call("POST", "/v1/batches/flush").status_code == 202
        if moment == "in_flight":
            worker.wait_for(lambda: simulator.stats()["in_flight"] == 1, "the batch to reach the simulator")
        else:
            worker.wait_for(lambda: simulator.stats()["executed"] == N, "the simulator to execute the batch")
        # The state was committed before the call: the ledger says submitted while the call is out.
        assert {p.status for p in worker.payouts()} == {"submitted"}
        worker.kill()
        simulator.behave()
        worker.start()
        worker.wait_for(lambda: {p.status for p in worker.payouts()} == {"paid"}, "recovery", timeout=90)
        payouts = worker.payouts()
        assert {p.cashback_task_id for p in payouts} == set(tasks)
        assert_paid_once(simulator, payouts)
        executed = [t for t in simulator.transfers() if t["status"] == "SUCCESS"]
        assert sorted(t["out_biz_no"] for t in executed) == sorted(p.out_biz_no for p in payouts)
        if moment == "executed":
            assert simulator.stats()["transfer_items"] == N  # found by the query: never sent again
        (batch,) = worker.call("GET", "/v1/batches").json()["items"]
        assert (batch["status"], batch["counts"]) == ("completed", {"paid": N})
    finally:
        worker.stop()


class TestCrashEmbedded:
    @pytest.mark.parametrize("moment", ["in_flight", "executed"])
    async def test_kill_between_submit_and_record(
        self, tmp_path: Path, simulator: Simulator, moment: str
    ) -> None:
        bus = EmbeddedBus(tmp_path / "events.db")
        await bus.start()
        try:
            await crash_and_recover(tmp_path, simulator, bus, worker_env(tmp_path, simulator), moment)
        finally:
            await bus.stop()


@pytest.fixture
def broker() -> BrokerAccess:
    return kafka_broker()


@pytest.mark.kafka
@pytest.mark.postgres
class TestCrashKafkaPostgres:
    @pytest.mark.parametrize("moment", ["in_flight", "executed"])
    async def test_kill_between_submit_and_record(
        self, tmp_path: Path, simulator: Simulator, broker: BrokerAccess, moment: str
    ) -> None:
        async with broker.namespace("payout-crash") as prefix:
            bus = broker.bus(client_id="payout-crash-test", topic_prefix=prefix)  # as case-api would publish
            await bus.start()
            try:
                async with fresh_postgres_database("payout_worker_crash") as url:
                    env = broker_worker_env(tmp_path, simulator, broker, url, prefix)
                    await crash_and_recover(tmp_path, simulator, bus, env, moment)
            finally:
                await bus.stop()
