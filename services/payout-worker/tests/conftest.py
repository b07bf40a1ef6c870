from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from payout_testing import Simulator, Worker, running_worker, start_simulator


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[Worker]:
    async for running in running_worker(tmp_path):
        yield running


@pytest.fixture(scope="session")
def simulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    yield from start_simulator(tmp_path_factory.mktemp("simulator") / "simulator.db")


@pytest.fixture
def simulator(simulator_process: Simulator) -> Simulator:
    """The shared simulator process, its behaviour and records reset for this test."""
    simulator_process.reset()
    return simulator_process
