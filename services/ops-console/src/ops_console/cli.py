"""`ops-console serve | migrate | accounts create|list|disable|set-password`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from aftersales_shared.cli import _no_database, _shops, add_serve_and_migrate, serve_or_migrate
from aftersales_shared.db import make_engine, session_factory, unit_of_work
from aftersales_shared.problems import Problem
from sqlalchemy.exc import SQLAlchemyError

from .accounts import StaffRole, check_password, create_account, hash_password, list_accounts, require_account
from .config import Settings
from .sessions import end_sessions

SERVICE_DIR = Path(__file__).resolve().parent  # alembic.ini and migrations/


def _roles(value: str) -> list[StaffRole]:
    try:
        return [StaffRole(r.strip()) for r in value.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"roles are {', '.join(r.value for r in StaffRole)}") from None


def read_password() -> str:
    """From the terminal (asked twice), or the first line of stdin (scripts); never an argument."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise Problem(422, "password_mismatch", "Passwords differ", "the two passwords differ")
    return first


async def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.sqlalchemy_url)
    now = datetime.now(UTC)
    try:
        async with unit_of_work(session_factory(engine)) as db:
            if args.accounts_command == "create":
                account = await create_account(
                    db,
                    username=args.username,
                    display_name=args.display_name or args.username,
                    password=read_password(),
                    roles=args.roles,
                    shops=args.shops,
                    now=now,
                )
                print(
                    json.dumps({"username": account.username, "roles": account.roles, "shops": account.shops})
                )
            elif args.accounts_command == "list":
                for account in await list_accounts(db):
                    print(
                        json.dumps(
                            {
                                "username": account.username,
                                "display_name": account.display_name,
                                "roles": account.roles,
                                "shops": account.shops,
                                "disabled": account.disabled_at is not None,
                            },
                            ensure_ascii=False,
                        )
                    )
            elif args.accounts_command == "disable":
                account = await require_account(db, args.username)
                account.disabled_at, account.updated_at = account.disabled_at or now, now
                await end_sessions(db, account.username)
                print(f"disabled {account.username}; signed out everywhere")
            else:
                account = await require_account(db, args.username)
                password = read_password()
                check_password(password)
                account.password_hash, account.updated_at = await hash_password(password), now
                await end_sessions(db, account.username)
                print(f"new password for {account.username}; signed out everywhere")
    except Problem as refused:
        print(f"ops-console accounts: {refused.detail}", file=sys.stderr)
        return 2
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"ops-console accounts: cannot use the database ({reason}); migrated?", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="ops-console")
    commands = main_parser.add_subparsers(dest="command", required=True)
    add_serve_and_migrate(commands)
    accounts = commands.add_parser(
        "accounts", help="staff accounts; passwords are read from the terminal or stdin"
    )
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True)
    create = account_commands.add_parser("create")
    create.add_argument("username")
    create.add_argument("--display-name")
    create.add_argument(
        "--roles", required=True, type=_roles, help="comma-separated: " + ",".join(r.value for r in StaffRole)
    )
    create.add_argument(
        "--shops", required=True, type=_shops, help="comma-separated shop ids, or * for every shop"
    )
    account_commands.add_parser("list")
    account_commands.add_parser("disable").add_argument("username")
    account_commands.add_parser("set-password").add_argument("username")
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    if serve_or_migrate(args, settings, SERVICE_DIR, "ops_console.main:create_app") != 0:
        return 1
    if args.command == "accounts":
        if (missing := _no_database(settings)) is not None:
            print(missing.replace(" keys:", " accounts:"), file=sys.stderr)
            return 1
        return asyncio.run(_accounts(settings, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
