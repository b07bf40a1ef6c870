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

import httpx
from case_api.schemas import CaseCreate  # the body model both endpoints take (module level: FastAPI resolves it)

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
SERVICE_DIR = ROOT / "services" / "case-api"
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

    return Table("bench_cases", MetaData(), Column("id", String, primary_key=True), Column("body", JSON, nullable=False))


BASELINE_TABLE = _baseline_table()


def serve(kind: str, port: int) -> None:
    """The server subprocess: uvicorn exactly as `case-api serve` runs it (aftersales_shared/cli.py)."""
    import uvicorn

    app = "case_api.main:create_app" if kind == "case-api" else "create_case:create_baseline_app"
    uvicorn.run(app, factory=True, host="127.0.0.1", port=port, log_config=None, access_log=False,
                app_dir=str(BENCH_DIR))


# ---------------------------------------------------------------- request bodies

def order_body(now: datetime, n: int) -> dict[str, Any]:
    """case_api_testing.order_body, with times recent enough for SystemClock: signed yesterday."""
    return {
        "shop_id": "shop-a", "platform": "tmall",
        "buyer": {"id": f"buyer-{n}", "name": "张三", "phone": "13812345678", "address": "浙江省杭州市西湖区文三路 1 号",
                  "alipay_account": "zhangsan@example.com"},
        "paid_at": (now - timedelta(days=3)).isoformat(),
        "lines": [
            {"line_id": "L1", "sku": "TEE-M-BLK", "name": "纯棉T恤", "size": "M", "color": "black", "category": "tops",
             "quantity": 2, "unit_price": "129.00", "paid_amount": "238.00"},
            {"line_id": "L2", "sku": "PANTS-L", "name": "休闲裤", "size": "L", "color": "grey", "category": "bottoms",
             "quantity": 1, "unit_price": "199.00", "paid_amount": "189.00"},
        ],
        "shipping_fee": "10.00", "shipping_insurance": False,
        "shipment": {"carrier": "SF", "tracking_no": f"SF{1000000 + n}", "warehouse_id": "WH-HZ",
                     "shipped_at": (now - timedelta(days=2)).isoformat()},
        "signed_at": (now - timedelta(days=1)).isoformat(),
    }


def case_body(order_id: str) -> dict[str, Any]:
    """7-day no-reason return of one unit: allowed after receipt, needs no evidence, far from the cap."""
    return {"order_id": order_id, "lines": [{"line_id": "L1", "quantity": 1}], "remedy": "return_refund",
            "reason": "no_reason", "description": "颜色和图片不一样,不想要了", "evidence_ids": []}


# ---------------------------------------------------------------- CPU accounting from /proc

def _proc_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _postgres_ticks() -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if Path(entry.path, "comm").read_text().startswith("postgres"):
                    total += _proc_ticks(int(entry.name))
            except OSError:
                continue
    return total


@dataclass
class CpuMeter:
    """CPU used (as % of one core) by the server, PostgreSQL and this load generator over a phase."""

    server_pid: int
    started: float = 0.0
    marks: tuple[int, int, float] = (0, 0, 0.0)
    result: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self.started = time.perf_counter()
        self.marks = (_proc_ticks(self.server_pid), _postgres_ticks(), time.process_time())
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self.started
        server, pg, me = self.marks
        self.result = {
            "server": 100 * (_proc_ticks(self.server_pid) - server) / CLK_TCK / wall,
            "postgres": 100 * (_postgres_ticks() - pg) / CLK_TCK / wall,
            "client": 100 * (time.process_time() - me) / wall,
        }


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
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
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


async def closed_loop(clients: Clients, send: Send, first: int, count: int, concurrency: int,
                      expect: tuple[int, ...] = (201,)) -> Phase:
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
    return Phase(ok=count - sum(failures.values()), wall=wall, latencies=latencies, failures=failures,
                 offered_rate=rate)


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
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "DEV_API_KEY", "ENVIRONMENT",
                        "AFTERSALES_ENVIRONMENT", "DATA_DIR"} and not k.startswith("CASE_API_")}
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def running_server(name: str, kind: str, env: dict[str, str], work: Path) -> AsyncIterator[Server]:
    port = free_port()
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port)],
                                env={**env, "CASE_API_PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT,
                                cwd=work)
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
    """A new database on the server (as aftersales_shared.testing.fresh_postgres_database), dropped after."""
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
            _, secret = await create_key(session, name="bench", roles=[Role.storefront], shops=["shop-a"],
                                         now=datetime.now(SHANGHAI))
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
    """`py-spy record` of a server during its peak phase; a summary of the hottest frames afterwards."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.exe = shutil.which("py-spy") or os.environ.get("PY_SPY")
        self.proc: subprocess.Popen[bytes] | None = None
        self.out: Path | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            if not self.exe:
                print("--profile: py-spy not found (pip install py-spy, or set PY_SPY); not profiling",
                      file=sys.stderr)

    @contextlib.contextmanager
    def record(self, name: str, pid: int) -> Any:
        if self.directory is None or not self.exe:
            yield
            return
        self.out = self.directory / f"{name}.collapsed"
        self.proc = subprocess.Popen([self.exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                                      "--nonblocking", "--output", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
            if self.proc.poll() is None:
                self.proc.kill()

    @staticmethod
    def summary(path: Path, top: int = 12) -> list[str]:
        """Inclusive share of samples per function, for the project's and its libraries' frames."""
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        total = 0
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1].split(":")[0]
                      if " (" in f else f for f in stack.split(";")]
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            if frames:
                own[frames[-1]] += count
        if not total:
            return ["(no samples)"]
        lines = [f"{total} samples; inclusive % (self %) of the hottest frames:"]
        skip = ("run_forever", "_run_once", "_run (events", "<module>", "run (runners", "run (uvicorn",
                "serve (", "run_until_complete", "main (")
        shown = 0
        for frame, count in inclusive.most_common():
            if any(s in frame for s in skip) or count == total:
                continue
            lines.append(f"  {100 * count / total:5.1f}% ({100 * own[frame] / total:4.1f}%)  {frame}")
            shown += 1
            if shown >= top:
                break
        lines.append("  self time: " + ", ".join(f"{f} {100 * c / total:.1f}%" for f, c in own.most_common(6)))
        return lines


# ---------------------------------------------------------------- one target

@dataclass
class Result:
    name: str
    peak: Phase
    half: Phase
    cpu: dict[str, float]


async def measure(name: str, server: Server, send: Send, first: int, args: argparse.Namespace,
                  profiler: Profiler) -> Result:
    async with Clients(server.base_url, args.concurrency) as clients:
        warm = await closed_loop(clients, send, first, args.warmup, args.concurrency)
        _check(name, "warm-up", warm)
        first += args.warmup
        with CpuMeter(server.proc.pid) as meter, profiler.record(name, server.proc.pid):
            peak = await closed_loop(clients, send, first, args.requests, args.concurrency)
        _check(name, "peak", peak)
        first += args.requests
        await asyncio.sleep(0.5)  # let the relay catch up before the latency run
        half = await open_loop(clients, send, first, args.latency_requests, 0.5 * peak.throughput)
        _check(name, "half-peak", half)
    print(f"  {name}: {peak.throughput:.0f} req/s at concurrency {args.concurrency}; "
          f"p99 {half.pct(0.99):.1f} ms at {half.offered_rate:.0f} req/s", file=sys.stderr, flush=True)
    return Result(name, peak, half, meter.result)


def _check(name: str, phase: str, result: Phase) -> None:
    if result.failures:
        details = "; ".join(f"{n}x {msg}" for msg, n in result.failures.most_common(3))
        raise RuntimeError(f"{name} {phase}: {sum(result.failures.values())} requests failed: {details}")


async def push_orders(server: Server, headers: dict[str, str], count: int, concurrency: int) -> float:
    now = datetime.now(SHANGHAI)

    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.put(f"/v1/orders/bench-{i:07d}", json=order_body(now, i), headers=headers)

    started = time.perf_counter()
    async with Clients(server.base_url, concurrency) as clients:
        result = await closed_loop(clients, send, 0, count, concurrency, expect=(201,))
    _check(server.name, "order push", result)
    return time.perf_counter() - started


async def bench_baseline(args: argparse.Namespace, work: Path, profiler: Profiler) -> Result:
    from sqlalchemy.engine import make_url

    async with fresh_database(args.database_url, "bench_baseline") as db:
        url = make_url(args.database_url).set(database=db).render_as_string(hide_password=False)
        await prepare_baseline(url)
        env = clean_env(BENCH_BASELINE_URL=url, DATA_DIR=str(work / "baseline"))
        async with running_server("baseline", "baseline", env, work) as server:

            async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.post("/v1/cases", json=case_body(f"bench-{i:07d}"))

            return await measure("baseline", server, send, 0, args, profiler)


async def bench_case_api(name: str, args: argparse.Namespace, work: Path, profiler: Profiler) -> Result:
    from sqlalchemy.engine import make_url

    data_dir = work / name
    data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if name == "pg":
            db = await stack.enter_async_context(fresh_database(args.database_url, "bench_case_api"))
            url = make_url(args.database_url).set(database=db).render_as_string(hide_password=False)
            env = clean_env(DATABASE_URL=args.database_url, CASE_API_DATABASE_NAME=db, DATA_DIR=str(data_dir))
        else:
            url = f"sqlite+aiosqlite:///{data_dir / 'case_api.db'}"  # Settings.sqlalchemy_url without DATABASE_URL
            env = clean_env(DATA_DIR=str(data_dir))
        headers = {"Authorization": f"Bearer {await prepare_case_api(url)}"}
        server = await stack.enter_async_context(running_server(name, "case-api", env, work))
        total = args.warmup + args.requests + args.latency_requests
        took = await push_orders(server, headers, total, args.concurrency)
        print(f"  {name}: pushed {total} orders in {took:.1f} s (not timed)", file=sys.stderr, flush=True)

        async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
            extra = {"Idempotency-Key": f"bench-{i}"} if args.idempotency_key else {}
            return await client.post("/v1/cases", json=case_body(f"bench-{i:07d}"), headers={**headers, **extra})

        return await measure(name, server, send, 0, args, profiler)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- report

def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(results: dict[str, Result], args: argparse.Namespace, took: float) -> dict[str, Any]:
    print()
    print(f"create case over HTTP: concurrency {args.concurrency}, {args.requests} requests at peak, "
          f"{args.latency_requests} at half peak (open loop), warm-up {args.warmup}"
          + (", Idempotency-Key on" if args.idempotency_key else ""))
    head = (f"{'target':<10}{'peak req/s':>11}{'srv cpu':>9}{'pg cpu':>8}{'gen cpu':>9}"
            f"{'half-peak rate':>15}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    print(head)
    print("-" * len(head))
    for r in results.values():
        print(f"{r.name:<10}{r.peak.throughput:>11.0f}{r.cpu['server']:>8.0f}%{r.cpu['postgres']:>7.0f}%"
              f"{r.cpu['client']:>8.0f}%{r.half.offered_rate or 0:>12.0f}/s {r.half.pct(0.5):>8.1f}"
              f"{r.half.pct(0.99):>8.1f}{max(r.half.latencies) * 1000:>8.1f}")
    print("(cpu: % of one core during the peak phase; server = the uvicorn process, gen = this load generator)")
    summary: dict[str, Any] = {"took_s": round(took, 1), "targets": {
        r.name: {"throughput": r.peak.throughput, "p50_ms": r.half.pct(0.5), "p99_ms": r.half.pct(0.99),
                 "half_peak_rate": r.half.offered_rate, "cpu": r.cpu,
                 "peak_p50_ms": r.peak.pct(0.5), "peak_p99_ms": r.peak.pct(0.99),
                 "peak_mean_ms": 1000 * statistics.fmean(r.peak.latencies)} for r in results.values()}}
    ratios = {}
    base, pg, lite = results.get("baseline"), results.get("pg"), results.get("sqlite")
    if base and pg:
        ratios["P1_throughput"] = pg.peak.throughput / base.peak.throughput
        print(f"P1  case-api PG / baseline throughput = {ratios['P1_throughput']:.2f}   (target >= 0.60) "
              f"{verdict(ratios['P1_throughput'] >= 0.6)}")
    if pg:
        ratios["P1_p99_ms"] = pg.half.pct(0.99)
        print(f"P1  case-api PG p99 at half peak      = {ratios['P1_p99_ms']:.1f} ms (target <= 20 ms) "
              f"{verdict(ratios['P1_p99_ms'] <= 20)}")
    if pg and lite:
        ratios["P6_throughput"] = lite.peak.throughput / pg.peak.throughput
        print(f"P6  case-api SQLite / PG throughput   = {ratios['P6_throughput']:.2f}   (target >= 0.50) "
              f"{verdict(ratios['P6_throughput'] >= 0.5)}")
    summary["ratios"] = ratios
    print(f"took {took:.0f} s")
    return summary


async def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    profiler = Profiler(args.profile)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-create-case-") as tmp:
        work = Path(tmp)
        for target in targets:
            print(f"[{time.perf_counter() - started:5.1f}s] {target} ...", file=sys.stderr, flush=True)
            if target == "baseline":
                results[target] = await bench_baseline(args, work, profiler)
            elif target in ("pg", "sqlite"):
                results[target] = await bench_case_api(target, args, work, profiler)
            else:
                raise SystemExit(f"unknown target {target!r} (baseline, pg, sqlite)")
            if profiler.out is not None and profiler.out.exists():
                print(f"  py-spy {target} ({profiler.out}):", file=sys.stderr)
                for line in Profiler.summary(profiler.out):
                    print("   " + line, file=sys.stderr)
                profiler.out = None
    summary = report(results, args, time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL")
                        or os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER_URL,
                        help="PostgreSQL server (fresh databases are made on it and dropped); "
                             "default $BENCH_DATABASE_URL, $TEST_DATABASE_URL, or pg.sh's")
    parser.add_argument("--requests", type=int, default=2000, help="requests in the peak-throughput phase")
    parser.add_argument("--latency-requests", type=int, default=1000, help="requests in the half-peak phase")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per target")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the peak phase")
    parser.add_argument("--targets", default="baseline,pg,sqlite")
    parser.add_argument("--idempotency-key", action="store_true", help="send an Idempotency-Key with each case")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy each server during its peak phase, raw stacks into DIR (perturbs the numbers)")
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
