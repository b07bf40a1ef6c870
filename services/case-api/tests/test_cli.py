"""`case-api keys create | list | revoke`: keys are hashed at rest and shown once; `migrate --wait`."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aftersales_shared import topics
from aftersales_shared.bus import Bus, Record
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.events import CloudEvent
from aftersales_shared.topics import dlq
from aftersales_testing import free_port, fresh_postgres_database, kafka_broker
from case_api.cli import main
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


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


class TestMigrateWait:
    """`migrate --wait SECONDS`, the prestart step: the database server may come up after it starts."""

    @pytest.mark.postgres
    async def test_waits_for_a_server_that_comes_up_later(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO)
        async with fresh_postgres_database("case_api_w") as url:
            server = make_url(url)
            port = free_port()
            monkeypatch.setenv("DATABASE_URL", server.set(port=port).render_as_string(hide_password=False))
            monkeypatch.setenv("CASE_API_DATABASE_NAME", str(server.database))
            migrating = asyncio.create_task(asyncio.to_thread(main, ["migrate", "--wait", "60"]))
            await asyncio.sleep(1.5)  # nothing listens yet
            assert not migrating.done()
            async with forwarder(port, server.host or "127.0.0.1", server.port or 5432):
                assert await migrating == 0
            assert any(r.getMessage().startswith("waiting for the database") for r in caplog.records)
            engine = create_async_engine(url)
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar() == 1
            await engine.dispose()

    def test_gives_up_with_a_clear_message(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", f"postgresql+asyncpg://u:p@127.0.0.1:{free_port()}/")
        assert main(["migrate", "--wait", "1.5"]) == 1
        assert "the database did not answer within 1.5s" in capsys.readouterr().err


@asynccontextmanager
async def forwarder(port: int, host: str, target: int) -> AsyncIterator[None]:
    """A TCP port forwarding to the database server: the server 'coming up' on `port`."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, target)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w), return_exceptions=True)

    server = await asyncio.start_server(connect, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


class TestDeadLetters:
    """`dlq list | replay TOPIC`: see what was parked, and send it back once the cause is fixed."""

    @pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
    def bus_env(self, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bus:
        monkeypatch.setenv("DATA_DIR", str(tmp_path))
        monkeypatch.delenv("DATABASE_URL", raising=False)
        if request.param == "embedded":
            monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
            return EmbeddedBus(tmp_path / "events.db")
        broker = kafka_broker()
        prefix = f"dlq{uuid.uuid4().hex[:8]}."
        # A replay writes payouts.results.v1, which only payout-worker may: an operator runs it as the admin.
        for name, value in broker.service_env("case-api", principal="admin").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("KAFKA_TOPIC_PREFIX", prefix)
        return broker.bus(client_id="dlq-test", topic_prefix=prefix)

    async def test_list_then_replay_once(self, bus_env: Bus, capsys: pytest.CaptureFixture[str]) -> None:
        bus = bus_env
        await bus.start()
        parked = CloudEvent(
            id="evt_parked", source="/test", type="payouts.payout.paid.v1", time=datetime.now(UTC), data={}
        )
        error = b"ValidationError: input_value='13812345678'"
        headers = (("error", error), ("consumer_group", b"case-api"), ("original_offset", b"7"))
        await bus.publish(dlq(topics.PAYOUT_RESULTS), "cb_1", parked.to_bytes(), headers)
        await bus.publish(dlq(topics.PAYOUT_RESULTS), "cb_2", b"not an event", headers)

        async def cli(args: list[str]) -> int:
            return await asyncio.to_thread(main, args)

        assert await cli(["dlq", "list", topics.PAYOUT_RESULTS, "--wait", "5"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted((p["key"], p["event_id"], p["error"], p["consumer_group"]) for p in listed) == [
            ("cb_1", parked.id, "ValidationError: input_value='***'", "case-api"),  # masked
            ("cb_2", None, "ValidationError: input_value='***'", "case-api"),  # not an event
        ]
        assert await cli(["dlq", "replay", topics.PAYOUT_RESULTS, "--wait", "5"]) == 0
        assert capsys.readouterr().out.strip() == f"replayed 2 to {topics.PAYOUT_RESULTS}"
        assert await cli(["dlq", "replay", topics.PAYOUT_RESULTS, "--wait", "2"]) == 0
        assert capsys.readouterr().out.strip() == f"replayed 0 to {topics.PAYOUT_RESULTS}"

        consumer = await bus.consumer("dlq-test-reader", [topics.PAYOUT_RESULTS])
        try:
            back: list[Record] = []
            for _ in range(100):
                if len(back) == 2:
                    break
                back += await consumer.fetch(timeout_ms=200)
        finally:
            await consumer.close()
            await bus.stop()
        assert sorted((r.key, r.value) for r in back) == [
            ("cb_1", parked.to_bytes()),
            ("cb_2", b"not an event"),
        ]
        assert all(
            {k for k, _ in r.headers} == {"replayed_from"}
            and dict(r.headers)["replayed_from"].startswith(dlq(topics.PAYOUT_RESULTS).encode())
            for r in back
        )
