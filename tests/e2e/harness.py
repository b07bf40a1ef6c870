"""What the end-to-end tests share: `scripts/run.py` (what `make run` starts) brought up as a process
group, on the embedded default (SQLite and the embedded event log) or on PostgreSQL with the real Kafka
broker, and a client per service that remembers every 5xx answer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aftersales_testing import free_port, fresh_postgres_database, kafka_broker
from case_api_testing import order_body

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("case-api", "logistics-watcher", "payout-worker", "ops-console", "payout-simulator")
DATABASES = {
    "case-api": "CASE_API",
    "logistics-watcher": "LOGISTICS_WATCHER",
    "payout-worker": "PAYOUT_WORKER",
}
CONSOLE_DATABASE = "OPS_CONSOLE"  # ops-console has a database of its own, but no events
MODES = ("embedded", "postgres-kafka")
SHOP = "shop-e2e"


@dataclass
class Stack:
    clients: dict[str, httpx.AsyncClient]
    log: Path
    server_errors: list[str] = field(default_factory=list)  # every 5xx answer of any call, as it came

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.clients[service].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def until(
        self,
        what: str,
        probe: Callable[[], Awaitable[Any]],
        timeout: float = 90,
        state: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Poll `probe` until it returns something truthy (events cross processes asynchronously). On a
        timeout the failure shows what `state` reads then, and the tail of the services' log."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if result := await probe():
                return result
            await asyncio.sleep(0.25)
        seen = f"; what there is: {await state()}" if state is not None else ""
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}{seen}; the services' log:\n{self.tail()}"
        )

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@asynccontextmanager
async def running_stack(mode: str, data: Path) -> AsyncIterator[Stack]:
    """run.py with every service on a free port and a fresh key, in `mode` (one of MODES), until every
    service is ready; stopped (SIGTERM, then SIGKILL of the group) on the way out."""
    key = "e2e-" + uuid.uuid4().hex
    ports = {name: free_port() for name in SERVICES}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "ENVIRONMENT")
    }
    env |= {"DATA_DIR": str(data / "data"), "DEV_API_KEY": key, "LOG_LEVEL": "INFO"}
    env |= {name.upper().replace("-", "_") + "_PORT": str(port) for name, port in ports.items()}
    env["PAYOUT_WORKER_TICK_SECONDS"] = "0.2"
    async with AsyncExitStack() as stack:
        if mode == "postgres-kafka":
            broker = kafka_broker()
            for prefix in (*DATABASES.values(), CONSOLE_DATABASE):
                url = await stack.enter_async_context(fresh_postgres_database(prefix.lower() + "_e2e"))
                env[f"{prefix}_DATABASE_NAME"] = url.rsplit("/", 1)[1]
            env["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
            # Each service as itself: its own credentials, and the ACLs of this run's topic namespace.
            env["KAFKA_TOPIC_PREFIX"] = namespace = f"e2e.{uuid.uuid4().hex[:8]}."
            await broker.grant(namespace)
            env |= broker.services_env()
        log = data / "services.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "run.py")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            server_errors: list[str] = []

            async def note_5xx(response: httpx.Response) -> None:
                if response.status_code >= 500:
                    await response.aread()
                    request = response.request
                    server_errors.append(
                        f"{request.method} {request.url}: {response.status_code} {response.text[:300]}"
                    )

            clients = {
                name: await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}",
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=30,
                        event_hooks={"response": [note_5xx]},
                    )
                )
                for name, port in ports.items()
            }
            running = Stack(clients, log, server_errors)

            async def ready() -> bool:
                assert process.poll() is None, f"run.py exited:\n{running.tail()}"
                try:
                    return all([(await c.get("/readyz")).status_code == 200 for c in clients.values()])
                except httpx.TransportError:
                    return False

            # five processes importing, migrating and starting at once: slow on a busy 2-core machine
            await running.until("every service to be ready", ready, timeout=240)
            server_errors.clear()  # a service still starting may answer /readyz with a 503
            yield running
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator's supervisor would: run.py stops its services; anything left is killed."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=40)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def order(tracking_no: str, *, signed: bool) -> dict[str, Any]:
    """case-api's sample order, of this test's shop, paid four days ago and shipped three days ago."""
    now = datetime.now(UTC)
    sample = order_body()
    return order_body(
        shop_id=SHOP,
        paid_at=iso(now - timedelta(days=4)),
        shipment={
            **sample["shipment"],
            "tracking_no": tracking_no,
            "shipped_at": iso(now - timedelta(days=3)),
        },
        signed_at=iso(now - timedelta(days=1)) if signed else None,
    )
