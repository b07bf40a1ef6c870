"""The command line every service offers: serve, migrate, API key management, dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from . import deadletters, topics
from .auth import ApiKey, Role, create_key
from .bus.factory import make_bus
from .db import is_sqlite, make_engine, session_factory, unit_of_work
from .migrations import upgrade, wait_for_database
from .settings import ServiceSettings


def _no_database(settings: ServiceSettings) -> str | None:
    """Why the keys command cannot start, when the SQLite file is not there (connecting would create an
    empty one)."""
    url, service = settings.sqlalchemy_url, settings.service_name
    database = make_url(url).database if is_sqlite(url) else None
    if database is None or (database != ":memory:" and Path(database).is_file()):
        return None
    return (
        f"{service} keys: no database at {database}: run `{service} migrate` first, or set DATA_DIR "
        "(or DATABASE_URL) to where the service keeps its data"
    )


async def _keys(settings: ServiceSettings, args: argparse.Namespace) -> int:
    """Key management on this service's database; a database that is unreachable or not migrated is said
    in one line (exit 1), not a traceback."""
    url, service = settings.sqlalchemy_url, settings.service_name
    database = make_url(url).database if is_sqlite(url) else None
    try:
        return await _key_command(settings, args)
    except (OSError, SQLAlchemyError) as exc:
        where = database or make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"{service} keys: cannot use the database at {where} ({reason}); is it up, and migrated "
            f"(`{service} migrate`)?",
            file=sys.stderr,
        )
        return 1


def _key_json(key: ApiKey, now: datetime) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "roles": key.roles,
        "shops": key.shops,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked": key.revoked_at is not None,
        "expired": key.expires_at is not None and key.expires_at <= now,
    }


async def _key_command(settings: ServiceSettings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.sqlalchemy_url)
    now = datetime.now(UTC)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            if args.keys_command == "create":
                expires_at = now + args.expires_in if args.expires_in else args.expires_at
                if expires_at is not None and expires_at <= now:
                    print(f"--expires-at {expires_at.isoformat()} has passed already", file=sys.stderr)
                    return 2
                key, secret = await create_key(
                    session,
                    name=args.name,
                    roles=args.roles,
                    shops=args.shops,
                    now=now,
                    expires_at=expires_at,
                )
                print(
                    json.dumps(
                        {
                            "id": key.id,
                            "name": key.name,
                            "roles": key.roles,
                            "shops": key.shops,
                            "expires_at": expires_at.isoformat() if expires_at else None,
                            "api_key": secret,
                            "note": "shown once; store it now",
                        },
                        ensure_ascii=False,
                    )
                )
            elif args.keys_command == "list":
                for key in (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all():
                    print(json.dumps(_key_json(key, now), ensure_ascii=False))
            else:
                revoked = await session.get(ApiKey, args.key_id)
                if revoked is None:
                    print(f"no key {args.key_id}", file=sys.stderr)
                    return 2
                revoked.revoked_at = now
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


def _shops(value: str) -> list[str] | None:
    """`*`: every shop (None); otherwise the comma-separated shop ids."""
    shops = [s.strip() for s in value.split(",") if s.strip()]
    if shops == ["*"]:
        return None
    if not shops or "*" in shops:
        raise argparse.ArgumentTypeError("comma-separated shop ids, or * alone for every shop")
    return shops


_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _duration(value: str) -> timedelta:
    """30d, 12h, 90m, 2w."""
    if not (match := _DURATION.fullmatch(value.strip())) or int(match[1]) == 0:
        raise argparse.ArgumentTypeError("a positive whole number of m, h, d or w: 30d, 12h, 90m, 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _instant(value: str) -> datetime:
    """An ISO 8601 time with its offset: 2027-01-01T00:00:00+08:00."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("an ISO 8601 time, e.g. 2027-01-01T00:00:00+08:00") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError("give the time's offset, e.g. 2027-01-01T00:00:00+08:00")
    return at.astimezone(UTC)


def add_serve_and_migrate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def serve_or_migrate(
    args: argparse.Namespace, settings: ServiceSettings, service_dir: Path, app_path: str
) -> int:
    """Run `serve` or `migrate` (nothing for other commands); 1 when the database did not answer in time."""
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
            timeout_keep_alive=settings.keep_alive_seconds,
            log_config=None,
            access_log=False,
        )
    return 0


def make_main(
    settings_factory: Callable[[], ServiceSettings], app_path: str, service_dir: Path
) -> Callable[[Sequence[str] | None], int]:
    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=settings_factory().service_name)
        commands = parser.add_subparsers(dest="command", required=True)
        add_serve_and_migrate(commands)
        keys = commands.add_parser("keys", help="API keys: create, list, revoke")
        key_commands = keys.add_subparsers(dest="keys_command", required=True)
        create = key_commands.add_parser("create")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--roles", required=True, type=_roles, help="comma-separated: " + ",".join(r.value for r in Role)
        )
        create.add_argument(
            "--shops",
            required=True,
            type=_shops,
            help="comma-separated shop ids, or * for every shop (required: all shops must be asked for)",
        )
        expiry = create.add_mutually_exclusive_group()
        expiry.add_argument(
            "--expires-in",
            type=_duration,
            metavar="DURATION",
            help="the key stops working after: 30d, 12h, 2w",
        )
        expiry.add_argument(
            "--expires-at",
            type=_instant,
            metavar="ISO",
            help="the key stops working at: 2027-01-01T00:00:00+08:00",
        )
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
        if serve_or_migrate(args, settings, service_dir, app_path) != 0:
            return 1
        if args.command == "keys":
            if (missing := _no_database(settings)) is not None:
                print(missing, file=sys.stderr)
                return 1
            return asyncio.run(_keys(settings, args))
        if args.command == "dlq":
            return asyncio.run(_dead_letters(settings, args))
        return 0

    return main
