"""A loop that runs in the background of a service until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

log = logging.getLogger(__name__)
RESTARTS = Counter(
    "aftersales_background_restarts", "background loops started again after a failure", ["loop"]
)
FIRST_PAUSE, LAST_PAUSE = 1.0, 60.0  # seconds before a failed loop starts again, doubling up to the last


class BackgroundLoop:
    """Subclasses implement `run()`; `start()` runs it as a task, `stop()` cancels it and waits.

    A failure `run()` does not handle itself is logged with its traceback, counted, and `run()` starts
    again after a pause (1 s, doubling up to a minute; back to 1 s once it has run that long): a loop that
    died quietly would leave its service answering /readyz and doing nothing."""

    task_name = "background-loop"
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervised(), name=self.task_name)

    async def _supervised(self) -> None:
        clock, pause = asyncio.get_running_loop().time, FIRST_PAUSE
        while True:
            started = clock()
            try:
                await self.run()
                return
            except Exception:
                if clock() - started >= LAST_PAUSE:
                    pause = FIRST_PAUSE
                RESTARTS.labels(self.task_name).inc()
                log.exception("%s failed; starting it again in %g s", self.task_name, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LAST_PAUSE)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
