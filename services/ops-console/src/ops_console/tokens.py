"""The key ops-console signs staff tokens with, and the token for one call on a person's behalf."""

from __future__ import annotations

from datetime import datetime, timedelta

from aftersales_shared.signing import dev_key, parse_private_key
from aftersales_shared.staff_tokens import issue
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .accounts import StaffRole
from .config import Settings
from .models import StaffAccount

DEV_PRIVATE_FILE = "staff-token-key.pem"
DEV_PUBLIC_FILE = "staff-token-key.pub"  # what `make run` gives the services as STAFF_TOKEN_PUBLIC_KEYS


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """OPS_CONSOLE_TOKEN_SIGNING_KEY, or (development) the pair kept in DATA_DIR, made on first use."""
    if settings.token_signing_key is not None:
        return parse_private_key(settings.token_signing_key.get_secret_value())
    return dev_key(settings.data_dir, DEV_PRIVATE_FILE, DEV_PUBLIC_FILE)


def token_for(key: Ed25519PrivateKey, account: StaffAccount, now: datetime, lifetime: timedelta) -> str:
    """A staff token naming the person, with the service roles of the account (admin is the console's own)
    and its shops."""
    return issue(
        key,
        username=account.username,
        display_name=account.display_name,
        roles=[r for r in account.roles if r != StaffRole.admin],
        shops=account.shops,
        now=now,
        lifetime=lifetime,
    )
