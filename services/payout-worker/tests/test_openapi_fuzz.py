"""Schemathesis against payout-worker's own OpenAPI document, over real HTTP: no input makes it answer 5xx."""

from __future__ import annotations

from pathlib import Path

from aftersales_testing import fuzz_openapi


class TestOpenApiFuzz:
    def test_no_generated_request_gets_a_server_error(self, tmp_path: Path) -> None:
        fuzz_openapi("payout-worker", tmp_path)
