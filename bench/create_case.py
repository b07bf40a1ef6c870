"""Create-case benchmark (ARCHITECTURE.md "Performance targets", P1 and P6), over real HTTP, in one run.

Three targets, each a uvicorn server (one worker, same settings as `case-api serve`) started here as a
subprocess on a loopback port, measured one after another so they never share the CPU:

  baseline  a bare FastAPI app (below) whose POST takes `case_api.schemas.CaseCreate` and does ONE INSERT
            (id + the body's JSON) into PostgreSQL through `aftersales_shared.db.make_engine` (asyncpg);
            no auth, no policy, no outbox
  pg        the real `case_api.main:create_app` on PostgreSQL: bearer key lookup, policy, case row +
            timeline row + outbox row in one transaction, outbox relay to the embedded event log
  sqlite    the same app on the embedded default (SQLite, WAL)

Each case-api request opens a case on an order of its own (pushed first with PUT /v1/orders/{id}, not
timed), so no request is refused by R-COMP-CAP or a second-case rule. Per target: warm-up, then the peak
throughput (closed loop, `--concurrency` in flight, `--requests` requests), then latency at half of that
peak (open loop: requests sent on a fixed schedule at 0.5 x peak, `--latency-requests` of them; latency
counts from the scheduled send time, so a stalled server cannot hide its queue).

Prints a table and the ratios: P1 = pg / baseline throughput (>= 0.6) and pg p99 at half peak (<= 20 ms),
P6 = sqlite / pg throughput (>= 0.5). The ratios are printed, never asserted: exit status is non-zero only
if a request failed or a server did not start.

    .venv/bin/python bench/create_case.py [--database-url URL] [--requests N] [--concurrency C] ...
    .venv/bin/python bench/create_case.py --profile /tmp/prof   # also py-spy each server during its peak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import case_api
import httpx

# The body model both endpoints take; at module level so that FastAPI resolves the baseline's annotation.
from case_api.schemas import CaseCreate

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
SCRIPT = Path(__file__).resolve()
SERVICE_DIR = Path(case_api.__file__).parent  # alembic.ini and migrations/
DEFAULT_SERVER_URL = "postgresql+asyncpg://aftersales:aftersales@127.0.0.1:15432/"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the baseline app (runs in a server process)


def create_baseline_app() -> Any:
    """A bare FastAPI endpoint: validate `CaseCreate`, one INSERT of its JSON plus an id, 201."""
    from aftersales_shared.db import make_engine
    from aftersales_shared.ids import new_id
    from fastapi import FastAPI
    from sqlalchemy import insert

    url = os.environ["BENCH_BASELINE_URL"]
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["engine"] = make_engine(url)  # the same engine settings case-api uses
        yield
        await state["engine"].dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/cases", status_code=201)
    async def create(body: CaseCreate) -> dict[str, Any]:
        data = body.model_dump(mode="json")
        row_id = new_id("case")
        async with state["engine"].begin() as conn:
            await conn.execute(insert(BASELINE_TABLE).values(id=row_id, body=data))
        return {"id": row_id, **data}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _baseline_table() -> Any:
    from sqlalchemy import JSON, Column, MetaData, String, Table

    return Table(
        "bench_cases",
        MetaData(),
        Column("id", String, primary_key=True),
        Column("body", JSON, nullable=False),
    )


BASELINE_TABLE = _baseline_table()


def serve(kind: str, port: int) -> None:
    """The server subprocess: uvicorn exactly as `case-api serve` runs it (aftersales_shared/cli.py)."""
    import uvicorn

    app = (
        os.environ.get("BENCH_CASE_API_APP", "case_api.main:create_app")
        if kind == "case-api"
        else "create_case:create_baseline_app"
    )
    uvicorn.run(
        app,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        app_dir=str(BENCH_DIR),
    )


# ---------------------------------------------------------------- request bodies


def order_body(now: datetime, n: int) -> dict[str, Any]:
    """case_api_testing.order_body, with times recent enough for SystemClock: signed yesterday."""
    return {
        "shop_id": "shop-a",
        "platform": "tmall",
        "buyer": {
            "id": f"buyer-{n}",
            "name": "张三",
            "phone": "13812345678",
            "address": "浙江省杭州市西湖区文三路 1 号",
            "alipay_account": "zhangsan@example.com",
        },
        "paid_at": (now - timedelta(days=3)).isoformat(),
        "lines": [
            {
                "line_id": "L1",
                "sku": "TEE-M-BLK",
                "name": "纯棉T恤",
                "size": "M",
                "color": "black",
                "category": "tops",
                "quantity": 2,
                "unit_price": "129.00",
                "paid_amount": "238.00",
            },
            {
                "line_id": "L2",
                "sku": "PANTS-L",
                "name": "休闲裤",
                "size": "L",
                "color": "grey",
                "category": "bottoms",
                "quantity": 1,
                "unit_price": "199.00",
                "paid_amount": "189.00",
            },
        ],
        "shipping_fee": "10.00",
        "shipping_insurance": False,
        "shipment": {
            "carrier": "SF",
            "tracking_no": f"SF{1000000 + n}",
            "warehouse_id": "WH-HZ",
            "shipped_at": (now - timedelta(days=2)).isoformat(),
        },
        "signed_at": (now - timedelta(days=1)).isoformat(),
    }


def case_body(order_id: str) -> dict[str, Any]:
    """7-day no-reason return of one unit: allowed after receipt, needs no evidence, far from the cap."""
    return {
        "order_id": order_id,
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "return_refund",
        "reason": "no_reason",
        "description": "颜色和图片不一样,不想要了",
        "evidence_ids": [],
    }


# ---------------------------------------------------------------- CPU accounting from /proc


def _proc_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _postgres_ticks(database: str | None) -> dict[int, int]:
    """CPU ticks of the PostgreSQL backends serving `database` (others' databases on the same server and
    the server's own processes are left out)."""
    ticks: dict[int, int] = {}
    if database is None:
        return ticks
    marker = f" {database} "
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker in Path(entry.path, "cmdline").read_text(errors="replace").replace("\0", " "):
                    ticks[int(entry.name)] = _proc_ticks(int(entry.name))
            except OSError:
                continue
    return ticks


def _machine_busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait, over every core


@dataclass
class CpuMeter:
    """CPU (as % of one core, over the metered phases) of the server, PostgreSQL, this load generator, and
    everything else on the machine (other people's jobs on a shared box: the noise to read the numbers by)."""

    server_pid: int
    database: str | None  # the PostgreSQL database the server uses (None: SQLite)
    ticks: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    _marks: tuple[float, int, dict[int, int], float, int] = (0.0, 0, {}, 0.0, 0)

    def __enter__(self) -> CpuMeter:
        self._marks = (
            time.perf_counter(),
            _proc_ticks(self.server_pid),
            _postgres_ticks(self.database),
            time.process_time(),
            _machine_busy_ticks(),
        )
        return self

    def __exit__(self, *_: object) -> None:
        started, server, pg, me, busy = self._marks
        self.wall += time.perf_counter() - started
        self.ticks["server"] += _proc_ticks(self.server_pid) - server
        # Backends that started during the phase count from 0; those that ended are lost (a few ticks).
        self.ticks["postgres"] += sum(
            max(0, t - pg.get(pid, 0)) for pid, t in _postgres_ticks(self.database).items()
        )
        self.ticks["client"] += round((time.process_time() - me) * CLK_TCK)
        self.ticks["machine"] += _machine_busy_ticks() - busy

    def percent(self) -> dict[str, float]:
        if not self.wall:
            return {}
        pct = {k: 100 * v / CLK_TCK / self.wall for k, v in self.ticks.items()}
        pct["other"] = max(0.0, pct.pop("machine", 0.0) - pct["server"] - pct["postgres"] - pct["client"])
        return pct


# ---------------------------------------------------------------- load generation

Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class Phase:
    ok: int
    wall: float
    latencies: list[float]  # seconds
    failures: Counter[str]
    offered_rate: float | None = None

    @property
    def throughput(self) -> float:
        return self.ok / self.wall

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return 1000 * data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


class Clients:
    """`size` httpx.AsyncClients of ONE connection each, lent out one request at a time.

    Not one AsyncClient with a pool of `size`: httpcore's pool costs O(connections) per request, and at 32
    connections on this 2-core machine a single client spends ~4 ms of CPU per request and caps near
    220 req/s (against ~1 ms and ~850 req/s this way), which would make the generator the bottleneck.
    """

    def __init__(self, base_url: str, size: int) -> None:
        # An idle connection is dropped before uvicorn's 5 s keep-alive ends it: while the other targets take
        # their turn, a request sent as the server closes the connection would fail with a ReadError.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=4.0)
        self.all = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) for _ in range(size)]
        self.free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self.all:
            self.free.put_nowait(client)

    async def send(self, send: Send, i: int) -> httpx.Response:
        client = await self.free.get()
        try:
            return await send(client, i)
        finally:
            self.free.put_nowait(client)

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        for client in self.all:
            await client.aclose()


def _failure(response: httpx.Response | BaseException, expect: tuple[int, ...]) -> str | None:
    if isinstance(response, BaseException):
        return f"{type(response).__name__}: {response}"[:200]
    if response.status_code not in expect:
        return f"{response.status_code} {response.text[:200]}"
    return None


async def closed_loop(
    clients: Clients, send: Send, first: int, count: int, concurrency: int, expect: tuple[int, ...] = (201,)
) -> Phase:
    """`concurrency` workers, each sending its next request as soon as its last one answered."""
    next_index = first
    end = first + count
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    async def worker() -> None:
        nonlocal next_index
        while next_index < end:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                response: httpx.Response | BaseException = await clients.send(send, i)
            except httpx.HTTPError as exc:
                response = exc
            latencies.append(time.perf_counter() - t0)
            if (problem := _failure(response, expect)) is not None:
                failures[problem] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    wall = time.perf_counter() - started
    return Phase(ok=count - sum(failures.values()), wall=wall, latencies=latencies, failures=failures)


async def open_loop(clients: Clients, send: Send, first: int, count: int, rate: float) -> Phase:
    """Send request k at start + k/rate whatever the answers do; latency counts from that scheduled time."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()

    async def one(i: int, scheduled: float) -> None:
        try:
            response: httpx.Response | BaseException = await clients.send(send, i)
        except httpx.HTTPError as exc:
            response = exc
        latencies.append(time.perf_counter() - scheduled)
        if (problem := _failure(response, (201,))) is not None:
            failures[problem] += 1

    tasks = []
    started = time.perf_counter() + 0.01
    for k in range(count):
        scheduled = started + k / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(first + k, scheduled)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    return Phase(
        ok=count - sum(failures.values()),
        wall=wall,
        latencies=latencies,
        failures=failures,
        offered_rate=rate,
    )


# ---------------------------------------------------------------- servers and databases


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "KAFKA_BOOTSTRAP_SERVERS",
            "DEV_API_KEY",
            "ENVIRONMENT",
            "AFTERSALES_ENVIRONMENT",
            "DATA_DIR",
        }
        and not k.startswith("CASE_API_")
    }
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running_server(name: str, kind: str, env: dict[str, str], work: Path) -> AsyncIterator[Server]:
    port = free_port()
    log = work / f"{name}.log"
    command = [sys.executable, str(SCRIPT), "--serve", kind, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env={**env, "CASE_API_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    server = Server(name, proc, port, log)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=server.base_url, timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} server exited ({proc.returncode}):\n{server.tail()}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} server not healthy in 60 s:\n{server.tail()}")
                await asyncio.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new database on the server (as aftersales_testing.fresh_postgres_database), dropped after."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def prepare_case_api(url: str) -> str:
    """Migrate, then make a storefront key for shop-a; returns its secret."""
    from aftersales_shared.auth import Role, create_key
    from aftersales_shared.db import make_engine, session_factory, unit_of_work
    from aftersales_shared.migrations import upgrade

    await upgrade(SERVICE_DIR, url)
    engine = make_engine(url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            _, secret = await create_key(
                session, name="bench", roles=[Role.storefront], shops=["shop-a"], now=datetime.now(SHANGHAI)
            )
    finally:
        await engine.dispose()
    return secret


async def prepare_baseline(url: str) -> None:
    from aftersales_shared.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(BASELINE_TABLE.metadata.create_all)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- py-spy (optional)


class Profiler:
    """`py-spy record` of each server over the peak phases; a summary of the hottest frames afterwards."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.exe = shutil.which("py-spy") or os.environ.get("PY_SPY")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outputs: dict[str, Path] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if not self.exe:
                print(
                    "--profile: py-spy not found (pip install py-spy, or set PY_SPY); not profiling",
                    file=sys.stderr,
                )

    @contextlib.contextmanager
    def record(self, name: str, pid: int) -> Any:
        if self.directory is None or not self.exe:
            yield
            return
        out = self.outputs[name] = self.directory / f"{name}.collapsed"
        self.procs.append(
            subprocess.Popen(
                [
                    self.exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    @staticmethod
    def summary(path: Path, top: int = 25) -> list[str]:
        """Share of the (non-idle) samples per function: inclusive, and self."""
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short_frame(f) for f in stack.split(";")]
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                own[frames[-1]] += count
        if not total:
            return ["(no samples)"]
        lines = [f"{total} samples (CPU only); inclusive% self%  function (file:line of the definition)"]
        for frame, count in inclusive.most_common():
            if count / total > 0.97:
                continue  # the event loop and uvicorn's entry points: everything is under them
            lines.append(f"  {100 * count / total:5.1f} {100 * own[frame] / total:5.1f}  {frame}")
            if len(lines) > top:
                break
        lines.append("  top self: " + "; ".join(f"{f} {100 * c / total:.1f}%" for f, c in own.most_common(8)))
        return lines


def _short_frame(frame: str) -> str:
    """py-spy's `func (path/to/file.py:123)` -> `func (pkg/file.py)`: one entry per function, not per line."""
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    return f"{func} ({'/'.join(parts[-3:])})"


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    server: Server
    send: Send
    clients: Clients
    cpu: CpuMeter
    next_index: int = 0
    peaks: list[Phase] = field(default_factory=list)
    halves: list[Phase] = field(default_factory=list)

    def take(self, count: int) -> int:
        first, self.next_index = self.next_index, self.next_index + count
        return first

    @property
    def throughput(self) -> float:
        return sum(p.ok for p in self.peaks) / sum(p.wall for p in self.peaks)

    @property
    def half(self) -> Phase:
        return Phase(
            ok=sum(p.ok for p in self.halves),
            wall=sum(p.wall for p in self.halves),
            latencies=[x for p in self.halves for x in p.latencies],
            failures=Counter(),
            offered_rate=self.halves[0].offered_rate if self.halves else None,
        )


def _check(name: str, phase: str, result: Phase) -> None:
    if result.failures:
        details = "; ".join(f"{n}x {msg}" for msg, n in result.failures.most_common(3))
        raise RuntimeError(f"{name} {phase}: {sum(result.failures.values())} requests failed: {details}")


def order_id(i: int) -> str:
    return f"bench-{i:07d}"


async def push_orders(server: Server, headers: dict[str, str], ids: range, concurrency: int) -> None:
    """PUT /v1/orders/{id} for each id, as a storefront would."""
    now = datetime.now(SHANGHAI)

    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.put(f"/v1/orders/{order_id(i)}", json=order_body(now, i), headers=headers)

    async with Clients(server.base_url, concurrency) as clients:
        result = await closed_loop(clients, send, ids.start, len(ids), concurrency, expect=(201,))
    _check(server.name, "order push", result)


async def clone_orders(url: str, template: str, ids: range) -> None:
    """Copy the template order's rows (orders, order_lines) under new ids, inside the database: every column
    as the API wrote it, whatever the columns are. Minutes of PUTs become a second of setup."""
    from aftersales_shared.db import make_engine
    from sqlalchemy import inspect, text

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("orders", "order_lines"):
                columns = await conn.run_sync(
                    lambda sync, t=table: [c["name"] for c in inspect(sync).get_columns(t)]
                )
                quote = conn.dialect.identifier_preparer.quote
                others = ", ".join(quote(c) for c in columns if c != "order_id")
                insert = text(
                    f"INSERT INTO {quote(table)} (order_id, {others}) SELECT :new, {others} "
                    f"FROM {quote(table)} WHERE order_id = :template"
                )
                params = [{"new": order_id(i), "template": template} for i in ids]
                for start in range(0, len(params), 2000):
                    await conn.execute(insert, params[start : start + 2000])
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def baseline_target(args: argparse.Namespace, work: Path, orders: int) -> AsyncIterator[Target]:
    from sqlalchemy.engine import make_url

    async with fresh_database(args.database_url, "bench_baseline") as db:
        url = make_url(args.database_url).set(database=db).render_as_string(hide_password=False)
        await prepare_baseline(url)
        env = clean_env(BENCH_BASELINE_URL=url, DATA_DIR=str(work / "baseline"))
        async with (
            running_server("baseline", "baseline", env, work) as server,
            Clients(server.base_url, args.concurrency) as clients,
        ):

            async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.post("/v1/cases", json=case_body(order_id(i)))

            yield Target("baseline", server, send, clients, CpuMeter(server.proc.pid, db))


@contextlib.asynccontextmanager
async def case_api_target(
    name: str, args: argparse.Namespace, work: Path, orders: int
) -> AsyncIterator[Target]:
    """case-api on a fresh PostgreSQL database ("pg") or SQLite file ("sqlite"), with `orders` orders."""
    from sqlalchemy.engine import make_url

    data_dir = work / name
    data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        database = None
        if name == "pg":
            database = db = await stack.enter_async_context(
                fresh_database(args.database_url, "bench_case_api")
            )
            url = make_url(args.database_url).set(database=db).render_as_string(hide_password=False)
            env = clean_env(DATABASE_URL=args.database_url, CASE_API_DATABASE_NAME=db, DATA_DIR=str(data_dir))
        else:
            # What Settings.sqlalchemy_url is without DATABASE_URL.
            url = f"sqlite+aiosqlite:///{data_dir / 'case_api.db'}"
            env = clean_env(DATA_DIR=str(data_dir))
        env["BENCH_CASE_API_APP"] = args.case_api_app
        headers = {"Authorization": f"Bearer {await prepare_case_api(url)}"}
        server = await stack.enter_async_context(running_server(name, "case-api", env, work))
        took = time.perf_counter()
        if args.orders_via_api:
            await push_orders(server, headers, range(orders), args.concurrency)
            how = "pushed over the API"
        else:
            await push_orders(server, headers, range(1), 1)
            await clone_orders(url, order_id(0), range(1, orders))
            how = "1 pushed over the API, cloned in the database"
        print(
            f"  {name}: {orders} orders ({how}) in {time.perf_counter() - took:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        clients = await stack.enter_async_context(Clients(server.base_url, args.concurrency))

        async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
            extra = {"Idempotency-Key": f"bench-{i}"} if args.idempotency_key else {}
            return await client.post("/v1/cases", json=case_body(order_id(i)), headers={**headers, **extra})

        yield Target(name, server, send, clients, CpuMeter(server.proc.pid, database))


# ---------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(targets: dict[str, Target], args: argparse.Namespace, took: float) -> dict[str, Any]:
    print()
    print(
        f"create case over HTTP (uvicorn, 1 worker each; httpx load generator in this process): concurrency "
        f"{args.concurrency}, {args.rounds} interleaved rounds, {args.requests} requests at peak and "
        f"{args.latency_requests} at half peak (open loop) per target, warm-up {args.warmup}"
        + (", Idempotency-Key on" if args.idempotency_key else "")
    )
    head = (
        f"{'target':<9}{'peak/s':>7}{'rounds':>10}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'at /s':>6}"
        f"{'srv ms':>8}{'pg ms':>7}  {'srv':>4}{'pg':>5}{'gen':>5}{'other':>6}"
    )
    print(head)
    print("-" * len(head))
    summary: dict[str, Any] = {
        "took_s": round(took, 1),
        "args": {k: str(v) for k, v in vars(args).items()},
        "targets": {},
    }
    for t in targets.values():
        half, cpu = t.half, t.cpu.percent()
        rounds = [p.throughput for p in t.peaks]
        spread = f"{min(rounds):.0f}-{max(rounds):.0f}" if len(rounds) > 1 else ""
        per_request = {k: 10 * v / t.throughput for k, v in cpu.items()}  # % of a core / (req/s) -> ms/req
        print(
            f"{t.name:<9}{t.throughput:>7.0f}{spread:>10}{half.pct(0.5):>8.1f}{half.pct(0.99):>8.1f}"
            f"{max(half.latencies) * 1000:>8.1f}{half.offered_rate or 0:>6.0f}"
            f"{per_request['server']:>8.2f}{per_request['postgres']:>7.2f}  "
            f"{cpu['server']:>3.0f}%{cpu['postgres']:>4.0f}%{cpu['client']:>4.0f}%{cpu['other']:>5.0f}%"
        )
        peak_lat = [x for p in t.peaks for x in p.latencies]
        summary["targets"][t.name] = {
            "throughput": t.throughput,
            "rounds": rounds,
            "half_peak_rate": half.offered_rate,
            "p50_ms": half.pct(0.5),
            "p99_ms": half.pct(0.99),
            "max_ms": max(half.latencies) * 1000,
            "peak_mean_ms": 1000 * statistics.fmean(peak_lat),
            "cpu_percent": cpu,
            "cpu_ms_per_request": per_request,
        }
    print(
        "peak/s: closed loop, all rounds (rounds: min-max). p50/p99/max: open loop at half that peak\n"
        "('at /s'), from each request's scheduled send time. srv ms / pg ms: CPU per request of the uvicorn\n"
        "process and of its PostgreSQL backends at peak (steadier than req/s on a shared machine).\n"
        "srv/pg/gen/other: % of one core at peak (gen = this load generator, other = the rest of the\n"
        "machine, other people's jobs included: noise if large)."
    )
    ratios: dict[str, float] = {}
    base, pg, lite = targets.get("baseline"), targets.get("pg"), targets.get("sqlite")
    if base and pg:
        ratios["P1_throughput"] = pg.throughput / base.throughput
        print(
            f"P1  case-api PG / baseline throughput = {ratios['P1_throughput']:.2f}    (target >= 0.60) "
            f"{verdict(ratios['P1_throughput'] >= 0.6)}"
        )
    if pg:
        ratios["P1_p99_ms"] = pg.half.pct(0.99)
        print(
            f"P1  case-api PG p99 at half peak      = {ratios['P1_p99_ms']:.1f} ms (target <= 20 ms) "
            f"{verdict(ratios['P1_p99_ms'] <= 20)}"
        )
    if pg and lite:
        ratios["P6_throughput"] = lite.throughput / pg.throughput
        print(
            f"P6  case-api SQLite / PG throughput   = {ratios['P6_throughput']:.2f}    (target >= 0.50) "
            f"{verdict(ratios['P6_throughput'] >= 0.5)}"
        )
    summary["ratios"] = ratios
    print(f"took {took:.0f} s")
    return summary


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:5.1f}s] {text}", file=sys.stderr, flush=True)

    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(names) - {"baseline", "pg", "sqlite"}:
        raise SystemExit(f"unknown targets {sorted(unknown)} (baseline, pg, sqlite)")
    per_peak = -(-args.requests // args.rounds)
    per_half = -(-args.latency_requests // args.rounds)
    orders = args.warmup + args.rounds * (per_peak + per_half)
    profiler = Profiler(args.profile)
    with tempfile.TemporaryDirectory(prefix="bench-create-case-") as tmp:
        work = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            # Every server is up before anything is measured; an idle one costs next to nothing (the
            # relay's 0.1 s poll), and interleaving the rounds spreads a shared machine's noise evenly.
            targets: dict[str, Target] = {}
            for name in names:
                say(f"starting {name}")
                factory = (
                    baseline_target(args, work, orders)
                    if name == "baseline"
                    else case_api_target(name, args, work, orders)
                )
                targets[name] = await stack.enter_async_context(factory)
            for t in targets.values():
                say(f"warm-up {t.name}")
                _check(
                    t.name,
                    "warm-up",
                    await closed_loop(t.clients, t.send, t.take(args.warmup), args.warmup, args.concurrency),
                )
            for t in targets.values():
                stack.enter_context(profiler.record(t.name, t.server.proc.pid))
            for r in range(args.rounds):
                for t in targets.values():
                    await asyncio.sleep(0.3)  # let the last target's relay and PostgreSQL settle
                    with t.cpu:
                        phase = await closed_loop(
                            t.clients, t.send, t.take(per_peak), per_peak, args.concurrency
                        )
                    _check(t.name, "peak", phase)
                    t.peaks.append(phase)
                    say(f"peak round {r + 1}/{args.rounds} {t.name}: {phase.throughput:.0f} req/s")
            profiler.stop_all()
            for r in range(args.rounds):
                for t in targets.values():
                    await asyncio.sleep(0.3)
                    phase = await open_loop(t.clients, t.send, t.take(per_half), per_half, 0.5 * t.throughput)
                    _check(t.name, "half-peak", phase)
                    t.halves.append(phase)
                    say(
                        f"half-peak round {r + 1}/{args.rounds} {t.name}: p99 {phase.pct(0.99):.1f} ms "
                        f"at {phase.offered_rate:.0f} req/s"
                    )
            summary = report(targets, args, time.perf_counter() - started)
            for name, path in profiler.outputs.items():
                if path.exists():
                    print(f"\npy-spy of {name} during its peak phases ({path}):")
                    for line in Profiler.summary(path, args.profile_top):
                        print("  " + line)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or DEFAULT_SERVER_URL,
        help="PostgreSQL server (fresh databases are made on it and dropped); "
        "default $BENCH_DATABASE_URL, $TEST_DATABASE_URL, or pg.sh's",
    )
    parser.add_argument("--requests", type=int, default=1200, help="requests in the peak-throughput phase")
    parser.add_argument("--latency-requests", type=int, default=600, help="requests in the half-peak phase")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per target")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the peak phase")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="peak and half-peak phases are split into this many "
        "rounds, the targets taking turns (spreads a shared machine's noise over all of them)",
    )
    parser.add_argument("--targets", default="baseline,pg,sqlite")
    parser.add_argument(
        "--idempotency-key", action="store_true", help="send an Idempotency-Key with each case"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy each server during its peak phase, raw stacks into DIR (perturbs the numbers)",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="frames to list per profile")
    parser.add_argument(
        "--case-api-app",
        default="case_api.main:create_app",
        metavar="MODULE:FACTORY",
        help="the case-api app factory to serve: A/B a variant without editing the service "
        "(its module on PYTHONPATH)",
    )
    parser.add_argument(
        "--orders-via-api",
        action="store_true",
        help="PUT every order over the API (slow) instead of pushing one and cloning it",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--serve", choices=["baseline", "case-api"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    try:
        return asyncio.run(run(args))
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
