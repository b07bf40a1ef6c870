"""Every benchmark in bench/ still runs and prints its summary lines, at a size that takes seconds: a
change that breaks one (a renamed setting, a stricter consumer) fails here, not the next time someone runs
`make bench`. No figure is asserted: these sizes measure nothing (ARCHITECTURE.md's targets are read from
full runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aftersales_testing import free_port, infra_missing, kafka_broker

ROOT = Path(__file__).resolve().parents[1]


def server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        infra_missing(
            "PostgreSQL", "run `make pg-up` and export TEST_DATABASE_URL=$(infra/postgres/pg.sh url)"
        )
    return url or ""


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.postgres
def test_create_case() -> None:
    out = run(
        "create_case.py", "--requests", "40", "--latency-requests", "20", "--warmup", "10", "--rounds", "1"
    )
    assert "P1  case-api PG / baseline throughput =" in out and "P6  case-api SQLite / PG throughput" in out


@pytest.mark.postgres
def test_stall_scan() -> None:
    out = run("stall_scan.py", "--parcels", "2000", "--database-url", server_url())
    assert "P4 targets" in out


@pytest.mark.postgres
def test_payouts() -> None:
    out = run("payouts.py", "--transfers", "200", "--port", str(free_port()), "--database-url", server_url())
    assert "P5 payouts: 200 transfers" in out and "duplicates: 0" in out


@pytest.mark.kafka
@pytest.mark.postgres
def test_watcher_ingest() -> None:
    servers = kafka_broker().servers
    out = run(
        "watcher_ingest.py",
        *("--events", "500", "--per-record-events", "50"),
        *("--bootstrap-servers", servers, "--database-url", server_url()),
    )
    assert "P3 targets" in out and "watcher " in out


@pytest.mark.kafka
@pytest.mark.postgres
def test_outbox_kafka() -> None:
    kafka_broker()
    out = run("outbox_kafka.py", "--seconds", "2", "--backlog", "2000", "--rate", "200")
    assert "P2 target p99" in out and "P2 target >=" in out
