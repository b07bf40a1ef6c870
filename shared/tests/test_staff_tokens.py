"""Staff tokens: what ops-console signs, and the only tokens a service takes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aftersales_shared.auth import Role, authenticate
from aftersales_shared.signing import key_id, public_text
from aftersales_shared.staff_tokens import (
    MAX_LIFETIME,
    StaffTokenVerifier,
    issue,
    looks_like_token,
    staff_token_verifier,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NOW = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
VERIFIER = StaffTokenVerifier([KEY.public_key()])


def token(key: Ed25519PrivateKey = KEY, **changes: Any) -> str:
    fields: dict[str, Any] = {
        "username": "alice",
        "display_name": "王丽 Alice",
        "roles": ["support"],
        "shops": ["shop-a"],
        "now": NOW,
        "lifetime": timedelta(minutes=2),
    }
    return issue(key, **{**fields, **changes})


def parts(text: str) -> list[dict[str, Any]]:
    return [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in text.split(".")[:2]]


def signed(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey = KEY) -> str:
    """A token made by hand: any header and claims, signed by `key`."""
    enc = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode() for p in (header, claims)]
    body = ".".join(enc)
    return body + "." + base64.urlsafe_b64encode(key.sign(body.encode())).rstrip(b"=").decode()


class TestIssue:
    def test_claims(self) -> None:
        header, claims = parts(token())
        assert header == {"alg": "EdDSA", "typ": "JWT", "kid": key_id(KEY.public_key())}
        assert claims["iss"] == "ops-console" and claims["aud"] == "aftersales" and claims["sub"] == "alice"
        assert (
            claims["name"] == "王丽 Alice"
            and claims["roles"] == ["support"]
            and claims["shops"] == ["shop-a"]
        )
        assert claims["iat"] == int(NOW.timestamp()) and claims["exp"] == claims["iat"] + 120
        assert len(claims["jti"]) >= 16 and parts(token())[1]["jti"] != claims["jti"]

    def test_lifetime_is_at_most_five_minutes(self) -> None:
        assert parts(token(lifetime=MAX_LIFETIME))[1]["exp"] - int(NOW.timestamp()) == 300
        with pytest.raises(ValueError):
            token(lifetime=MAX_LIFETIME + timedelta(seconds=1))

    def test_every_shop_is_null(self) -> None:
        assert parts(token(shops=None))[1]["shops"] is None


class TestVerify:
    def test_genuine_and_current(self) -> None:
        claims = VERIFIER.verify(token(), NOW + timedelta(seconds=119))
        assert claims is not None
        assert (claims.username, claims.roles, claims.shops) == ("alice", {"support"}, {"shop-a"})

    def test_expiry_and_issue_time_with_a_small_leeway(self) -> None:
        assert VERIFIER.verify(token(), NOW + timedelta(seconds=150)) is not None  # 30 s leeway
        assert VERIFIER.verify(token(), NOW + timedelta(seconds=151)) is None
        assert VERIFIER.verify(token(), NOW - timedelta(seconds=30)) is not None
        assert VERIFIER.verify(token(), NOW - timedelta(seconds=31)) is None  # issued in the future

    def test_only_service_roles_of_a_person(self) -> None:
        claims = VERIFIER.verify(token(roles=["admin", "ops", "storefront", "warehouse"]), NOW)
        assert claims is not None and claims.roles == {"ops"}

    def test_another_key(self) -> None:
        assert VERIFIER.verify(token(Ed25519PrivateKey.generate()), NOW) is None

    def test_a_changed_claim_breaks_the_signature(self) -> None:
        genuine = token()
        header, _, signature = genuine.split(".")
        data = parts(genuine)[1] | {"shops": None}
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        assert VERIFIER.verify(f"{header}.{forged}.{signature}", NOW) is None

    @pytest.mark.parametrize(
        "header",
        [
            {"alg": "none", "kid": key_id(KEY.public_key())},
            {"alg": "HS256", "kid": key_id(KEY.public_key())},
            {"alg": "EdDSA", "kid": "ed25519:unknown"},
            {"alg": "EdDSA"},
        ],
    )
    def test_only_eddsa_with_a_trusted_key_id(self, header: dict[str, Any]) -> None:
        _, claims = parts(token())
        assert VERIFIER.verify(signed(header, claims), NOW) is None

    @pytest.mark.parametrize(
        "change",
        [
            {"iss": "someone-else"},
            {"aud": "payments"},
            {"exp": int(NOW.timestamp()) + 3600},  # lives an hour: refused whoever signed it
            {"sub": ""},
            {"roles": "support"},
            {"roles": [["support"]]},
            {"shops": "shop-a"},
            {"iat": "yesterday"},
            {"jti": None},
        ],
    )
    def test_claims_must_be_this_kind_of_token(self, change: dict[str, Any]) -> None:
        header, claims = parts(token())
        assert VERIFIER.verify(signed(header, {**claims, **change}), NOW) is None
        assert VERIFIER.verify(signed(header, claims), NOW) is not None  # the same, unchanged, passes

    @pytest.mark.parametrize(
        "junk",
        ["a.b.c", "...", "eyJ9.eyJ9.", token() + "x", "ä.ö.ü"],
        ids=["words", "dots", "empty-json", "a-token-and-one-more-character", "not-ascii"],  # one per worker
    )
    def test_junk_is_none_not_an_error(self, junk: str) -> None:
        assert VERIFIER.verify(junk, NOW) is None

    def test_settings_text(self) -> None:
        assert staff_token_verifier(None) is None and staff_token_verifier("  ") is None
        verifier = staff_token_verifier(public_text(KEY.public_key()))
        assert verifier is not None and verifier.verify(token(), NOW) is not None

    def test_api_keys_do_not_look_like_tokens(self) -> None:
        assert looks_like_token(token()) and not looks_like_token("ask_" + "x" * 43)


class TestAuthenticate:
    async def test_a_token_is_the_person(self) -> None:
        principal = await authenticate(None, f"Bearer {token()}", now=NOW, staff_tokens=VERIFIER)  # type: ignore[arg-type]
        assert principal.name == principal.key_id == "staff:alice"
        assert principal.roles == {Role.support} and principal.shops == {"shop-a"}
