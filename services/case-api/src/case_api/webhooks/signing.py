"""Standard Webhooks' symmetric scheme: `whsec_` + base64 secrets, `v1,` + base64 HMAC-SHA256 signatures of
`id.timestamp.body` keyed with the secret's decoded bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from aftersales_shared.events import STRUCTURED_CONTENT_TYPE

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One signature, `v1,<base64>`."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def headers(secrets_in_use: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt. While a rotated-out secret is still accepted, both sign (space-separated),
    so a receiver holding either verifies."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, webhook_id, timestamp, body) for s in secrets_in_use),
        "content-type": STRUCTURED_CONTENT_TYPE,  # the CloudEvents HTTP binding, structured mode
    }
