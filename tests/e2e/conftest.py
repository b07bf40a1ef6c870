from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import MODES, Stack, running_stack


@pytest.fixture(
    params=[
        pytest.param(mode, marks=[pytest.mark.postgres, pytest.mark.kafka] if mode != "embedded" else [])
        for mode in MODES
    ]
)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole system, started by scripts/run.py, in each mode."""
    async with running_stack(request.param, tmp_path) as running:
        yield running
