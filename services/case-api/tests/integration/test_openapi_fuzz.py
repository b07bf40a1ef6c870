"""Schemathesis against case-api's own OpenAPI document, over real HTTP: no input makes it answer 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aftersales_shared.testing import free_port

BIN = Path(sys.executable).parent


class TestOpenApiFuzz:
    def test_no_generated_request_gets_a_server_error(self, tmp_path: Path) -> None:
        port = free_port()
        env = {
            **os.environ,
            "DATA_DIR": str(tmp_path),
            "DEV_API_KEY": "fuzz-key",
            "CASE_API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        env.pop("DATABASE_URL", None)
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        with (tmp_path / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [str(BIN / "case-api"), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log
            )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            result = subprocess.run(
                [
                    str(BIN / "schemathesis"),
                    "run",
                    base + "/openapi.json",
                    "--checks",
                    "not_a_server_error",
                    "-H",
                    "Authorization: Bearer fuzz-key",
                    "--max-examples",
                    "25",
                    "--seed",
                    "20261126",
                    "--request-timeout",
                    "10",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp_path,
            )
            assert result.returncode == 0, (
                result.stdout[-6000:] + (tmp_path / "server.log").read_text()[-4000:]
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
