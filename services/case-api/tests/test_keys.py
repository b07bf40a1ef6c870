"""API keys (issue 11, item 7): `keys create` names its shops (`*` for every shop, said explicitly), a key
may expire (then 401, as a revoked one), a revoked DEV_API_KEY stays revoked across restarts, and `keys`
against a data folder with no database says so in one line."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aftersales_shared.auth import ApiKey, create_key
from aftersales_shared.clock import FrozenClock
from aftersales_shared.db import unit_of_work
from aftersales_shared.migrations import upgrade
from aftersales_testing import serve
from case_api.cli import main
from case_api.config import Settings
from case_api.main import create_app
from case_api_testing import NOW, SERVICE_DIR, Api, running_api
from sqlmodel import select


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's data folder (SQLite), migrated."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DEV_API_KEY", raising=False)
    assert main(["migrate"]) == 0
    return tmp_path


def create(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["keys", "create", "--name", "k", "--roles", "support", *args]) == 0
    return dict(json.loads(capsys.readouterr().out))


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


class TestShopsAreRequired:
    def test_without_shops_nothing_is_created(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["keys", "create", "--name", "k", "--roles", "support"])
        assert exited.value.code == 2 and "--shops" in capsys.readouterr().err
        assert listed(capsys) == []

    def test_a_star_is_every_shop_and_a_list_is_those_shops(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert create(capsys, "--shops", "*")["shops"] is None
        assert create(capsys, "--shops", "shop-b, shop-a")["shops"] == ["shop-a", "shop-b"]
        assert [k["shops"] for k in listed(capsys)] == [None, ["shop-a", "shop-b"]]

    @pytest.mark.parametrize("shops", ["", " , ", "shop-a,*"])
    def test_no_shop_or_a_star_among_shops_is_refused(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], shops: str
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["keys", "create", "--name", "k", "--roles", "support", "--shops", shops])
        assert exited.value.code == 2 and "* alone for every shop" in capsys.readouterr().err
        assert listed(capsys) == []


class TestExpiry:
    def test_expires_in_and_expires_at(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        before = datetime.now(UTC)
        in_30_days = create(capsys, "--shops", "shop-a", "--expires-in", "30d")
        at = create(capsys, "--shops", "shop-a", "--expires-at", "2099-01-01T08:00:00+08:00")
        forever = create(capsys, "--shops", "shop-a")
        expires = datetime.fromisoformat(str(in_30_days["expires_at"]))
        assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
        assert at["expires_at"] == "2099-01-01T00:00:00+00:00" and forever["expires_at"] is None
        assert [(k["expires_at"], k["expired"]) for k in listed(capsys)] == [
            (expires.isoformat(), False),
            ("2099-01-01T00:00:00+00:00", False),
            (None, False),
        ]

    @pytest.mark.parametrize(
        "args",
        [
            ["--expires-in", "0d"],
            ["--expires-in", "thirty days"],
            ["--expires-at", "2099-01-01T08:00:00"],  # no offset: which 08:00?
            ["--expires-at", "soon"],
            ["--expires-in", "30d", "--expires-at", "2099-01-01T00:00:00Z"],
        ],
    )
    def test_a_meaningless_expiry_is_refused(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["keys", "create", "--name", "k", "--roles", "support", "--shops", "*", *args])
        assert exited.value.code == 2
        assert listed(capsys) == []

    def test_an_expiry_in_the_past_is_refused(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        args = ["--shops", "*", "--expires-at", "2020-01-01T00:00:00+00:00"]
        assert main(["keys", "create", "--name", "k", "--roles", "support", *args]) == 2
        assert "has passed" in capsys.readouterr().err and listed(capsys) == []

    async def test_an_expired_key_is_401_like_a_revoked_one(self, api: Api) -> None:
        async with unit_of_work(api.app.state.sessions) as session:
            _, secret = await create_key(
                session,
                name="temp",
                roles=["support"],
                shops=["shop-a"],
                now=api.clock.now(),
                expires_at=api.clock.now() + timedelta(hours=1),
            )
        headers = {"Authorization": f"Bearer {secret}"}
        assert (await api.client.get("/v1/cases", headers=headers)).status_code == 200
        api.clock.advance(seconds=3599)
        assert (await api.client.get("/v1/cases", headers=headers)).status_code == 200
        api.clock.advance(seconds=1)
        expired = await api.client.get("/v1/cases", headers=headers)
        assert expired.status_code == 401 and expired.headers["content-type"] == "application/problem+json"
        assert expired.json()["detail"] == "unknown, revoked or expired api key"
        assert (await api.call("GET", "/v1/cases", "support")).status_code == 200  # others still work

    async def test_a_key_made_by_the_cli_stops_at_its_expiry(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # The CLI runs its own event loop: in a thread, as from a shell beside the running service.
        secret = str(
            (await asyncio.to_thread(create, capsys, "--shops", "shop-a", "--expires-in", "2h"))["api_key"]
        )
        clock = FrozenClock(datetime.now(UTC))
        app = create_app(Settings(data_dir=data_dir), clock=clock)
        async with serve(app) as client:
            headers = {"Authorization": f"Bearer {secret}"}
            assert (await client.get("/v1/cases", headers=headers)).status_code == 200
            clock.advance(seconds=2 * 3600 + 60)
            assert (await client.get("/v1/cases", headers=headers)).status_code == 401


class TestDevKey:
    async def test_a_revoked_dev_key_stays_revoked_after_a_restart(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        settings = Settings(data_dir=tmp_path, dev_api_key="dev-key-for-this-test")
        await upgrade(SERVICE_DIR, settings.sqlalchemy_url)
        headers = {"Authorization": "Bearer dev-key-for-this-test"}

        async def start() -> AsyncIterator[tuple[int, object]]:
            app = create_app(settings, clock=FrozenClock(NOW))
            async with serve(app) as client:
                yield (await client.get("/v1/cases", headers=headers)).status_code, app

        async for status, app in start():
            assert status == 200
            async with unit_of_work(app.state.sessions) as session:  # type: ignore[attr-defined]
                (key,) = (await session.exec(select(ApiKey))).all()
                key.revoked_at = NOW
        capsys.readouterr()
        for _ in range(2):  # restarted, twice
            async for status, _app in start():
                assert status == 401
        warnings = [
            json.loads(line) for line in capsys.readouterr().err.splitlines() if "DEV_API_KEY" in line
        ]
        assert len(warnings) == 2 and all(
            w["level"] == "warning" and "stays so" in w["message"] for w in warnings
        )
        stored = (
            sqlite3.connect(tmp_path / "case_api.db").execute("SELECT revoked_at FROM api_keys").fetchall()
        )
        assert len(stored) == 1 and stored[0][0] is not None

    async def test_a_new_dev_key_is_created_and_kept(self, tmp_path: Path) -> None:
        for _ in range(2):
            async for running in running_api(
                Settings(data_dir=tmp_path, dev_api_key="fresh-dev-key"), tmp_path
            ):
                response = await running.client.get(
                    "/v1/cases", headers={"Authorization": "Bearer fresh-dev-key"}
                )
                assert response.status_code == 200


class TestNoDatabase:
    def test_a_data_folder_without_a_database_is_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "nothing-here"))
        monkeypatch.delenv("DATABASE_URL", raising=False)
        for command in (
            ["list"],
            ["revoke", "key_x"],
            ["create", "--name", "k", "--roles", "ops", "--shops", "*"],
        ):
            assert main(["keys", *command]) == 1
            out = capsys.readouterr()
            assert out.out == "" and len(out.err.strip().splitlines()) == 1, out.err
            assert "no database at" in out.err and "case-api migrate" in out.err
        assert not (tmp_path / "nothing-here" / "case_api.db").exists()  # nor was an empty one made

    def test_a_database_never_migrated_is_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.delenv("DATABASE_URL", raising=False)
        sqlite3.connect(tmp_path / "case_api.db").close()
        assert main(["keys", "list"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "no such table: api_keys" in err and "migrate" in err

    def test_an_unreachable_server_is_one_line_without_its_password(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://ops:s3cret@127.0.0.1:1/")
        assert main(["keys", "list"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "cannot use the database" in err, err
        assert "s3cret" not in err and "127.0.0.1:1" in err
