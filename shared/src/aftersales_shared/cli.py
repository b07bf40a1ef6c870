"""The command line every service offers: serve, migrate, API key management, dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from . import deadletters, topics
from .auth import ApiKey, Role, create_key
from .bus.factory import make_bus
from .db import make_engine, session_factory, unit_of_work
from .migrations import upgrade, wait_for_database
from .settings import ServiceSettings


async def _keys(settings: ServiceSettings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.sqlalchemy_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            if args.keys_command == "create":
                shops = None if args.shops in (None, "*") else [s for s in args.shops.split(",") if s]
                key, secret = await create_key(
                    session, name=args.name, roles=args.roles, shops=shops, now=datetime.now(UTC)
                )
                print(
                    json.dumps(
                        {
                            "id": key.id,
                            "name": key.name,
                            "roles": key.roles,
                            "shops": key.shops,
                            "api_key": secret,
                            "note": "shown once; store it now",
                        },
                        ensure_ascii=False,
                    )
                )
            elif args.keys_command == "list":
                for key in (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all():
                    print(
                        json.dumps(
                            {
                                "id": key.id,
                                "name": key.name,
                                "prefix": key.prefix,
                                "roles": key.roles,
                                "shops": key.shops,
                                "created_at": key.created_at.isoformat(),
                                "revoked": key.revoked_at is not None,
                            },
                            ensure_ascii=False,
                        )
                    )
            else:
                revoked = await session.get(ApiKey, args.key_id)
                if revoked is None:
                    print(f"no key {args.key_id}", file=sys.stderr)
                    return 2
                revoked.revoked_at = datetime.now(UTC)
                print(f"revoked {revoked.id} ({revoked.name})")
    finally:
        await engine.dispose()
    return 0


async def _dead_letters(settings: ServiceSettings, args: argparse.Namespace) -> int:
    bus = make_bus(settings)
    await bus.start()
    try:
        if args.dlq_command == "list":
            for parked in await deadletters.list_parked(bus, args.topic, args.wait):
                print(json.dumps(parked, ensure_ascii=False))
        else:
            print(f"replayed {await deadletters.replay(bus, args.topic, args.wait)} to {args.topic}")
    finally:
        await bus.stop()
    return 0


def _roles(value: str) -> list[Role]:
    try:
        return [Role(r.strip()) for r in value.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"roles are {', '.join(r.value for r in Role)}") from None


def make_main(
    settings_factory: Callable[[], ServiceSettings], app_path: str, service_dir: Path
) -> Callable[[Sequence[str] | None], int]:
    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=settings_factory().service_name)
        commands = parser.add_subparsers(dest="command", required=True)
        serve = commands.add_parser("serve", help="migrate the database, then serve HTTP")
        serve.add_argument("--no-migrate", action="store_true")
        migrate = commands.add_parser("migrate", help="alembic upgrade head on this service's database")
        migrate.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="first wait up to this long for the database to answer (a prestart step)",
        )
        keys = commands.add_parser("keys", help="API keys: create, list, revoke")
        key_commands = keys.add_subparsers(dest="keys_command", required=True)
        create = key_commands.add_parser("create")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--roles", required=True, type=_roles, help="comma-separated: " + ",".join(r.value for r in Role)
        )
        create.add_argument("--shops", default="*", help="comma-separated shop ids, or * for every shop")
        key_commands.add_parser("list")
        revoke = key_commands.add_parser("revoke")
        revoke.add_argument("key_id")
        parked = commands.add_parser("dlq", help="dead letters of a topic: list them, or replay them to it")
        parked.add_argument("dlq_command", choices=["list", "replay"])
        parked.add_argument("topic", choices=topics.ALL)
        parked.add_argument(
            "--wait", type=float, default=10, metavar="SECONDS", help="stop once nothing came for this long"
        )
        args = parser.parse_args(argv)
        settings = settings_factory()
        if args.command == "migrate" and args.wait:
            try:
                asyncio.run(wait_for_database(settings.sqlalchemy_url, args.wait))
            except (OSError, SQLAlchemyError) as exc:
                print(f"the database did not answer within {args.wait:g}s: {exc}", file=sys.stderr)
                return 1
        if args.command in ("serve", "migrate") and not getattr(args, "no_migrate", False):
            asyncio.run(upgrade(service_dir, settings.sqlalchemy_url))
        if args.command == "serve":
            import uvicorn

            uvicorn.run(
                app_path,
                factory=True,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
            )
        if args.command == "keys":
            return asyncio.run(_keys(settings, args))
        if args.command == "dlq":
            return asyncio.run(_dead_letters(settings, args))
        return 0

    return main
