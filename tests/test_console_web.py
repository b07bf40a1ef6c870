"""The console's web app's own unit tests (Vitest: SLA clocks, queue order, refusals, the API client's
CSRF handling), run with the rest of the suite. `make test` installs the app's packages first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "services" / "ops-console" / "web"


def test_the_web_apps_unit_tests_pass() -> None:
    npm = shutil.which("npm")
    if npm is None or not (WEB / "node_modules" / ".bin" / "vitest").exists():
        message = "the console's Vitest tests need Node.js 20 and `npm ci` in services/ops-console/web"
        if os.environ.get("REQUIRE_INFRA") == "1":
            pytest.fail(message + " (REQUIRE_INFRA=1)")
        pytest.skip(message)
    run = subprocess.run(
        [npm, "test", "--", "--reporter=dot"], cwd=WEB, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout, run.stdout[-2000:]
