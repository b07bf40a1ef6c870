"""Staff tokens: how a person signed in to ops-console acts on the services.

ops-console holds the person's session and, for each call it makes on their behalf, signs a short-lived
JWT (RFC 7519, EdDSA over Ed25519, RFC 8037) with claims iss=ops-console, aud=aftersales, sub (the
username), name, roles, shops, iat, exp, jti. Every service verifies it against the public keys in
STAFF_TOKEN_PUBLIC_KEYS (the format of signing.parse_public_keys) beside its API keys: the caller is
then the person ("staff:<username>"), with the token's service roles and shops. A token that lives longer
than MAX_LIFETIME is refused whoever signed it, so disabling an account takes effect within that time.

The check is written here rather than through a JWT library: one algorithm, one key type, a fixed set of
claims; everything else (another `alg`, `none`, a key from the header) is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .signing import key_id, parse_public_keys

ISSUER = "ops-console"
AUDIENCE = "aftersales"
MAX_LIFETIME = timedelta(minutes=5)
LEEWAY = timedelta(seconds=30)  # clocks of the console and the services may differ this much
STAFF_ROLES = frozenset({"support", "ops"})  # the service roles a person may hold (never a machine's)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class StaffClaims:
    """Who a verified token names."""

    username: str
    display_name: str
    roles: frozenset[str]
    shops: frozenset[str] | None  # None: every shop


def issue(
    key: Ed25519PrivateKey,
    *,
    username: str,
    display_name: str,
    roles: Iterable[str],
    shops: Iterable[str] | None,
    now: datetime,
    lifetime: timedelta,
) -> str:
    """A signed token for the person, valid from `now` for `lifetime` (at most MAX_LIFETIME)."""
    if lifetime > MAX_LIFETIME or lifetime <= timedelta(0):
        raise ValueError(f"a staff token lives more than 0 and at most {MAX_LIFETIME}")
    header = {"alg": "EdDSA", "typ": "JWT", "kid": key_id(key.public_key())}
    issued = int(now.timestamp())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": username,
        "name": display_name,
        "roles": sorted(roles),
        "shops": None if shops is None else sorted(shops),
        "iat": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": secrets.token_urlsafe(16),
    }
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())
        for part in (header, claims)
    )
    return signing_input + "." + _b64(key.sign(signing_input.encode()))


def looks_like_token(bearer: str) -> bool:
    """A JWT (three base64url parts), not an API key (`ask_...`, or a development key without dots)."""
    return bearer.count(".") == 2


class StaffTokenVerifier:
    """Checks staff tokens against the public keys a service trusts."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self.keys = {key_id(k): k for k in keys}

    def __repr__(self) -> str:
        return f"StaffTokenVerifier(key_ids={sorted(self.keys)!r})"

    def verify(self, token: str, now: datetime) -> StaffClaims | None:
        """The claims of a token that is genuine and current at `now`, or None."""
        try:
            header_part, claims_part, signature_part = token.split(".")
            header = json.loads(_unb64(header_part))
            if not isinstance(header, dict) or header.get("alg") != "EdDSA":
                return None
            key = self.keys.get(str(header.get("kid")))
            if key is None:
                return None
            key.verify(_unb64(signature_part), f"{header_part}.{claims_part}".encode())
            claims = json.loads(_unb64(claims_part))
        except (ValueError, TypeError, binascii.Error, InvalidSignature, UnicodeDecodeError):
            return None
        return _current(claims, now)


def _current(claims: object, now: datetime) -> StaffClaims | None:
    """The claims when they are this token kind's, for this audience, and valid at `now`."""
    if not isinstance(claims, dict) or claims.get("iss") != ISSUER or claims.get("aud") != AUDIENCE:
        return None
    issued, expires, username, name = (claims.get(k) for k in ("iat", "exp", "sub", "name"))
    roles, shops = claims.get("roles"), claims.get("shops")
    if not (isinstance(issued, int) and isinstance(expires, int) and isinstance(username, str) and username):
        return None
    if not isinstance(claims.get("jti"), str):
        return None
    if not (isinstance(roles, list) and all(isinstance(r, str) for r in roles)):
        return None
    if shops is not None and not (isinstance(shops, list) and all(isinstance(s, str) for s in shops)):
        return None
    at, leeway = now.timestamp(), LEEWAY.total_seconds()
    if expires - issued > MAX_LIFETIME.total_seconds() or issued > at + leeway or expires < at - leeway:
        return None
    return StaffClaims(
        username=username,
        display_name=name if isinstance(name, str) else username,
        roles=frozenset(r for r in roles if r in STAFF_ROLES),
        shops=None if shops is None else frozenset(shops),
    )


def staff_token_verifier(configured: str | None) -> StaffTokenVerifier | None:
    """The verifier of STAFF_TOKEN_PUBLIC_KEYS, or None (unset: staff tokens are not accepted)."""
    return StaffTokenVerifier(parse_public_keys(configured)) if configured and configured.strip() else None
