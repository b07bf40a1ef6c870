"""`case-api keys create | list | revoke`: keys are hashed at rest and shown once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from case_api.cli import main


class TestKeysCommand:
    def test_create_list_revoke(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.delenv("DATABASE_URL", raising=False)
        assert main(["migrate"]) == 0
        assert (
            main(
                [
                    "keys",
                    "create",
                    "--name",
                    "shop-a-storefront",
                    "--roles",
                    "storefront",
                    "--shops",
                    "shop-a",
                ]
            )
            == 0
        )
        created = json.loads(capsys.readouterr().out)
        assert created["roles"] == ["storefront"] and created["shops"] == ["shop-a"]

        stored = sqlite3.connect(tmp_path / "case_api.db").execute("SELECT key_hash FROM api_keys").fetchall()
        assert stored and created["api_key"] not in str(stored)  # only the hash is at rest

        assert main(["keys", "list"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [k["id"] for k in listed] == [created["id"]] and listed[0]["revoked"] is False
        assert "api_key" not in listed[0]

        assert main(["keys", "revoke", created["id"]]) == 0
        capsys.readouterr()
        assert main(["keys", "list"]) == 0
        assert json.loads(capsys.readouterr().out)["revoked"] is True
        assert main(["keys", "revoke", "key_unknown"]) == 2

    def test_unknown_role_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        assert main(["migrate"]) == 0
        with pytest.raises(SystemExit) as exited:
            main(["keys", "create", "--name", "x", "--roles", "superuser"])
        assert exited.value.code == 2
