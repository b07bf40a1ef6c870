"""The console as a service: settings, its first admin, the web app it serves, the token it signs, the
command line, and its migrations."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from aftersales_shared.signing import private_text
from aftersales_shared.staff_tokens import StaffTokenVerifier
from aftersales_testing import check_migrations, fresh_postgres_database
from console_testing import NOW, SERVICE_DIR, running_console
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ops_console import cli, models
from ops_console.config import Settings
from ops_console.models import StaffAccount
from ops_console.tokens import DEV_PRIVATE_FILE, DEV_PUBLIC_FILE, signing_key, token_for
from pydantic import ValidationError
from sqlalchemy import MetaData


class TestSettings:
    def test_production_needs_a_database_and_a_signing_key(self) -> None:
        with pytest.raises(ValidationError, match="DATABASE_URL"):
            Settings(environment="production", token_signing_key="x")
        with pytest.raises(ValidationError, match="OPS_CONSOLE_TOKEN_SIGNING_KEY"):
            Settings(environment="production", database_url="postgresql+asyncpg://u:p@h/")
        key = private_text(Ed25519PrivateKey.generate())
        settings = Settings(
            environment="production", database_url="postgresql+asyncpg://u:p@h/", token_signing_key=key
        )
        assert settings.secure_cookie and settings.kafka_bootstrap_servers is None  # no Kafka needed

    def test_production_refuses_a_development_admin(self) -> None:
        with pytest.raises(ValidationError, match="DEV_ADMIN_PASSWORD"):
            Settings(
                environment="production",
                database_url="postgresql+asyncpg://u:p@h/",
                token_signing_key=private_text(Ed25519PrivateKey.generate()),
                dev_admin_password="long enough",
            )

    def test_a_short_development_password_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(ValidationError) as refused:
            Settings(dev_admin_password="admin")
        assert "at least 8" in str(refused.value) and "'admin'" not in str(refused.value)

    def test_token_lifetime_is_at_most_five_minutes(self) -> None:
        assert Settings(token_lifetime_seconds=300).token_lifetime_seconds == 300
        with pytest.raises(ValidationError):
            Settings(token_lifetime_seconds=301)

    def test_the_environment_names(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPS_CONSOLE_CASE_API_URL", "http://cases.internal:8000")
        monkeypatch.setenv("DEV_ADMIN_PASSWORD", "from make run")
        settings = Settings()
        assert settings.service_urls()["case-api"] == "http://cases.internal:8000"
        assert settings.dev_admin_password is not None
        assert settings.dev_admin_password.get_secret_value() == "from make run"


class TestFirstAdmin:
    async def test_made_while_there_is_no_account(self, tmp_path: Path) -> None:
        async with running_console(tmp_path, dev_admin_password="first admin pw") as console:
            response = await console.sign_in("admin", "first admin pw")
            assert response.status_code == 200
            assert response.json()["user"]["roles"] == ["admin", "ops", "support"]

    async def test_not_again_once_accounts_exist(self, tmp_path: Path) -> None:
        async with running_console(tmp_path) as console:
            await console.add_account("root", ["admin"])
        async with running_console(tmp_path, dev_admin_password="first admin pw") as console:
            assert (await console.sign_in("admin", "first admin pw")).status_code == 401


class TestTokens:
    def test_the_development_key_is_kept_in_the_data_folder(self, tmp_path: Path) -> None:
        key = signing_key(Settings(data_dir=tmp_path))
        assert (tmp_path / DEV_PRIVATE_FILE).stat().st_mode & 0o077 == 0
        assert (tmp_path / DEV_PUBLIC_FILE).read_text().strip()
        again = signing_key(Settings(data_dir=tmp_path))
        assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()

    def test_a_configured_key_wins(self, tmp_path: Path) -> None:
        configured = Ed25519PrivateKey.generate()
        key = signing_key(Settings(data_dir=tmp_path, token_signing_key=private_text(configured)))
        assert key.public_key().public_bytes_raw() == configured.public_key().public_bytes_raw()
        assert not (tmp_path / DEV_PRIVATE_FILE).exists()

    def test_a_persons_token_carries_service_roles_only(self) -> None:
        key = Ed25519PrivateKey.generate()
        account = StaffAccount(
            username="alice",
            display_name="王丽",
            password_hash="-",
            roles=["admin", "ops"],
            shops=["shop-a"],
            created_at=NOW,
            updated_at=NOW,
        )
        token = token_for(key, account, NOW, timedelta(seconds=120))
        claims = StaffTokenVerifier([key.public_key()]).verify(token, NOW)
        assert claims is not None
        assert (claims.username, claims.display_name, claims.roles, claims.shops) == (
            "alice",
            "王丽",
            {"ops"},
            {"shop-a"},
        )
        assert StaffTokenVerifier([key.public_key()]).verify(token, NOW + timedelta(seconds=151)) is None


class TestWebApp:
    def build(self, tmp_path: Path) -> Path:
        dist = tmp_path / "dist"
        (dist / "assets").mkdir(parents=True)
        (dist / "index.html").write_text("<!doctype html><div id=root></div>")
        (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
        (dist / "favicon.svg").write_text("<svg/>")
        return dist

    async def test_index_for_client_routes_and_cached_assets(self, tmp_path: Path) -> None:
        async with running_console(tmp_path, web_dist=self.build(tmp_path)) as console:
            for path in ("/", "/cases/case_1", "/logistics"):
                page = await console.client.get(path)
                assert page.status_code == 200 and "id=root" in page.text, path
                assert page.headers["cache-control"] == "no-cache"
            asset = await console.client.get("/assets/index-abc123.js")
            assert asset.status_code == 200 and asset.headers["cache-control"].endswith("immutable")
            assert (await console.client.get("/favicon.svg")).text == "<svg/>"
            assert (await console.client.get("/assets/missing.js")).status_code == 404
            outside = await console.client.get("/..%2f..%2f..%2fetc/passwd")  # nothing outside dist
            assert "root:" not in outside.text and "id=root" in outside.text
            unknown = await console.client.get("/api/nothing-here")
            assert (
                unknown.status_code in (401, 404)
                and unknown.headers["content-type"] == "application/problem+json"
            )
            assert (await console.client.get("/healthz")).json()["service"] == "ops-console"
            assert (await console.client.get("/readyz")).status_code == 200
            assert (await console.client.get("/metrics")).status_code == 200

    async def test_without_a_build_the_root_says_how(self, tmp_path: Path) -> None:
        async with running_console(tmp_path) as console:
            page = await console.client.get("/")
        assert page.status_code == 200 and "npm ci" in page.text and "npm run build" in page.text


class TestCommandLine:
    async def test_accounts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        async with running_console(tmp_path):
            pass  # migrated
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.setattr("sys.stdin", io.StringIO("a fine password\n"))

        def run(*args: str) -> int:  # in a thread: the command runs an event loop of its own
            return cli.main(list(args))

        assert (
            await asyncio.to_thread(
                run, "accounts", "create", "alice", "--roles", "support,ops", "--shops", "shop-a"
            )
            == 0
        )
        made = json.loads(capsys.readouterr().out)
        assert made == {"username": "alice", "roles": ["ops", "support"], "shops": ["shop-a"]}
        async with running_console(tmp_path) as console:
            assert (await console.sign_in("alice", "a fine password")).status_code == 200
        monkeypatch.setattr("sys.stdin", io.StringIO("another password\n"))
        assert await asyncio.to_thread(run, "accounts", "set-password", "alice") == 0
        assert await asyncio.to_thread(run, "accounts", "disable", "alice") == 0
        assert await asyncio.to_thread(run, "accounts", "list") == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert listed == [
            {
                "username": "alice",
                "display_name": "alice",
                "roles": ["ops", "support"],
                "shops": ["shop-a"],
                "disabled": True,
            }
        ]
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert (
            await asyncio.to_thread(run, "accounts", "create", "bob", "--roles", "ops", "--shops", "*") == 2
        )
        assert "8 to 256" in capsys.readouterr().err
        assert await asyncio.to_thread(run, "accounts", "disable", "nobody") == 2

    def test_without_a_database_it_says_so(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATA_DIR", str(tmp_path / "empty"))
        assert cli.main(["accounts", "list"]) == 1
        assert "ops-console accounts: no database" in capsys.readouterr().err


def console_metadata() -> MetaData:
    metadata = MetaData()
    for table in (models.StaffAccount, models.StaffSession, models.LoginFailure):
        table.__table__.to_metadata(metadata)  # type: ignore[attr-defined]
    return metadata


class TestMigrations:
    async def test_sqlite(self, tmp_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
        assert await check_migrations(SERVICE_DIR, console_metadata(), url) == []

    @pytest.mark.postgres
    async def test_postgres(self) -> None:
        async with fresh_postgres_database("ops_console_m") as url:
            assert await check_migrations(SERVICE_DIR, console_metadata(), url) == []
