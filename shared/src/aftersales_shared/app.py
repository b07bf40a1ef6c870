"""The app factory every service uses: database, bus, dev key, outbox relay, consumers, ops routes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from .auth import PrincipalCache, ensure_key
from .bus import Bus
from .bus.factory import make_bus
from .clock import Clock, SystemClock
from .consumer import ConsumerRunner
from .db import make_engine, session_factory, unit_of_work
from .logging import configure_logging
from .metrics import CountBy, refresh
from .openapi import APP_OPTIONS as OPENAPI_OPTIONS
from .openapi import install as install_openapi
from .outbox import OutboxRelay
from .retention import retention_job
from .settings import ServiceSettings
from .staff_tokens import staff_token_verifier
from .web import configure_app, database_check, ops_router

# Given the running app, the consumers it should run (built once the database and bus exist).
ConsumersFactory = Callable[[FastAPI], Sequence[ConsumerRunner]]
# Given the running app, long-running loops to keep going in the background (schedulers).
JobsFactory = Callable[[FastAPI], Sequence[Callable[[], Coroutine[Any, Any, None]]]]


def keep_startup_objects_out_of_gc() -> None:
    """Leave what the process holds once started (modules, models, schemas, the app) out of every later
    garbage collection: it lives as long as the process, and a busy service allocates enough to trigger a
    full collection every few seconds, which rescanned all of it: about a fifth of the CPU per scan the
    watcher ingests (P3), and a pause of milliseconds in whichever request it fell on (P1's p99). Once per
    process, after collecting what is garbage already (a frozen object is never freed)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def build_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    clock: Clock | None = None,
    bus: Bus | None = None,
    background: bool = True,
    consumers: ConsumersFactory | None = None,
    jobs: JobsFactory | None = None,
    state: dict[str, Any] | None = None,
    gauges: Sequence[CountBy] = (),
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """`background=False` leaves the relay and consumers stopped, for tests that drive them by hand.
    `gauges` are counted from the database at each scrape of /metrics, beside the outbox's.
    `body_limits`: path prefixes that take bodies larger than `settings.max_body_bytes` (uploads)."""
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.service_name)
        engine = make_engine(settings.sqlalchemy_url)
        app.state.sessions = sessions = session_factory(engine)
        app.state.bus = the_bus = bus or make_bus(settings)
        await the_bus.start()
        if settings.dev_api_key is not None:
            async with unit_of_work(sessions) as session:
                await ensure_key(
                    session, name="dev", secret=settings.dev_api_key.get_secret_value(), now=clock.now()
                )
        relay = app.state.relay = OutboxRelay(sessions, the_bus, clock)
        relay.watch()
        runners = app.state.consumers = list(consumers(app)) if consumers else []
        keep_startup_objects_out_of_gc()
        tasks: list[asyncio.Task[None]] = []
        if background:
            relay.start()
            for runner in runners:
                runner.start()
            loops = [*(jobs(app) if jobs else []), retention_job(app, settings.event_retention_days)]
            tasks = [asyncio.create_task(job(), name=job.__name__) for job in loops]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for runner in runners:
                await runner.stop()
            await relay.stop()
            await the_bus.stop()
            await engine.dispose()

    app = FastAPI(title=title, version="1.0.0", description=description, lifespan=lifespan, **OPENAPI_OPTIONS)
    app.state.settings = settings
    app.state.clock = clock
    app.state.staff_tokens = staff_token_verifier(settings.staff_token_public_keys)
    app.state.principal_cache = PrincipalCache(settings.principal_cache_seconds)
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    configure_app(app, settings.service_name, settings.max_body_bytes, body_limits)

    async def bus_check() -> None:
        if not await app.state.bus.healthy():
            raise RuntimeError("bus unavailable")

    async def db_check() -> None:
        await database_check(app)

    async def refresh_gauges() -> None:
        await refresh(app.state.sessions, settings.service_name, gauges, clock.now())

    app.include_router(
        ops_router(settings.service_name, {"database": db_check, "bus": bus_check}, refresh_gauges)
    )
    for router in routers:
        app.include_router(router)
    install_openapi(app)
    return app
