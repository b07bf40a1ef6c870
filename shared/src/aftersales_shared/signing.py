"""case-api signs every cashback approval it emits; payout-worker pays only an approval whose signature it
can verify (and cancels a payout only on a cancellation case-api signed with the same key). payout-worker
signs every payout result it emits; case-api applies only a result whose signature it can verify. Defence
in depth beside Kafka's ACLs: a principal that can write to aftersales.cashback.v1 still cannot invent, or
change, an approval that pays, nor stop one, and one that can write to payouts.results.v1 cannot fail a
payout that was made, which would give its money back to be paid again.

The signature is Ed25519 over a canonical form of the event (`approval_message`, `cancellation_message`,
`result_message`): the fields that decide who is paid what and for which task, in a fixed JSON rendering,
behind the event type. Keys are named by a key id derived from the public key, so a reader can trust
several (rotation). Signing and checking go through libsodium (PyNaCl), about twice as fast as OpenSSL's
Ed25519 here (a check: ~60 µs against ~130); keys are read and written with `cryptography`.

Keys as settings: the private key as a PEM (PKCS#8) or the base64 of its 32 raw bytes; public keys as
base64 of their 32 raw bytes (or PEM), several separated by commas. In the embedded development mode
with no key configured, both services use a key pair kept in the data folder (`dev_key`), made on first
start. `python -m aftersales_shared.signing new` prints a fresh pair as settings.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from .clock import as_utc
from .events import CashbackApproved, CashbackCancelled, PayoutResult, Signed

# Threads that check a batch's signatures at once: the cores this process may run on, up to four.
VERIFY_THREADS = min(
    4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
)
# A signature over an approval (a cancellation, a result) is good for nothing else.
DOMAIN = b"aftersales.cashback.approved.v1\n"
CANCELLATION_DOMAIN = b"aftersales.cashback.cancelled.v1\n"
RESULT_DOMAIN = b"payouts.payout.result.v1\n"
DEV_PRIVATE_FILE = "approval-signing-key.pem"
DEV_PUBLIC_FILE = "approval-signing-key.pub"
DEV_RESULT_FILES = ("payout-result-signing-key.pem", "payout-result-signing-key.pub")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def approval_message(approval: CashbackApproved) -> bytes:
    """The bytes signed: every field that says who is paid, how much, and for what."""
    fields = {
        "cashback_task_id": approval.cashback_task_id,
        "order_id": approval.order_id,
        "shop_id": approval.shop_id,
        "case_id": approval.case_id,
        "reason": approval.reason,
        "amount": f"{approval.amount:.2f}",
        "payee_account": approval.payee.alipay_account,
        "payee_name": approval.payee.name,
        "approved_at": _instant(approval.approved_at),
    }
    return _canonical(DOMAIN, fields)


def cancellation_message(cancellation: CashbackCancelled) -> bytes:
    """The bytes signed: which task of which order and shop is withdrawn, and why."""
    fields = {
        "cashback_task_id": cancellation.cashback_task_id,
        "order_id": cancellation.order_id,
        "shop_id": cancellation.shop_id,
        "reason": cancellation.reason,
    }
    return _canonical(CANCELLATION_DOMAIN, fields)


# What case-api signs with its approval key: what payout-worker pays, and what stops a payment.
Cashback = CashbackApproved | CashbackCancelled


def cashback_message(item: Cashback) -> bytes:
    return approval_message(item) if isinstance(item, CashbackApproved) else cancellation_message(item)


def result_message(result: PayoutResult) -> bytes:
    """The bytes signed: every field that says which payout of which task ended how, and what it paid."""
    fields = {
        "payout_id": result.payout_id,
        "cashback_task_id": result.cashback_task_id,
        "order_id": result.order_id,
        "amount": f"{result.amount:.2f}",
        "status": result.status,
        "out_biz_no": result.out_biz_no,
        "provider_reference": result.provider_reference,
        "failure_code": result.failure_code,
        "paid_at": _instant(result.paid_at) if result.paid_at else None,
    }
    return _canonical(RESULT_DOMAIN, fields)


def _instant(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(domain: bytes, fields: Mapping[str, str | None]) -> bytes:
    """The signed form: the domain, then the fields as sorted, compact, ASCII-only JSON."""
    return domain + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return "ed25519:" + hashlib.sha256(raw_public(key)).hexdigest()[:16]


def public_text(key: Ed25519PublicKey) -> str:
    """A public key as PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS takes it."""
    return base64.b64encode(raw_public(key)).decode()


def private_text(key: Ed25519PrivateKey) -> str:
    """A private key as CASE_API_APPROVAL_SIGNING_KEY takes it."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) or the base64 of the 32 raw bytes. Raises ValueError, never echoing the key."""
    text = text.strip()
    try:
        if text.startswith("-----"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = base64.b64decode(text, validate=True)
            key = (
                Ed25519PrivateKey.from_private_bytes(raw)
                if len(raw) == 32
                else serialization.load_der_private_key(raw, password=None)
            )
    except (ValueError, TypeError, binascii.Error, NotImplementedError):
        raise ValueError("not an Ed25519 private key (a PKCS#8 PEM or the base64 of 32 bytes)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the approval signing key must be an Ed25519 key")
    return key


def parse_public_keys(text: str) -> list[Ed25519PublicKey]:
    """One or more public keys: PEM blocks, or base64 of 32 raw bytes separated by commas or spaces."""
    keys: list[Ed25519PublicKey] = []
    for block in _PEM.finditer(text):
        key = serialization.load_pem_public_key(block.group(0).encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("an approval public key must be an Ed25519 key")
        keys.append(key)
    for token in re.split(r"[\s,]+", _PEM.sub(" ", text).strip()):
        if not token:
            continue
        try:
            raw = base64.b64decode(token, validate=True)
        except binascii.Error:
            raise ValueError(f"not a base64 public key: {token[:12]}...") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}: {token[:12]}...")
        keys.append(Ed25519PublicKey.from_public_bytes(raw))
    for key in keys:
        # A small-order point (the identity, ...) is 32 bytes like any key, but a signature of R = that
        # point and S = 0 verifies under it for any message in OpenSSL (libsodium refuses it): a key
        # anyone could sign for. Not a key an honest signer makes.
        if not crypto_core_ed25519_is_valid_point(raw_public(key)):
            raise ValueError(f"not a usable Ed25519 public key (a small-order point): {public_text(key)}")
    return keys


def check_private_key(configured: str | None, setting: str, *, production: bool, why: str) -> None:
    """A signing key setting at start: readable when set (a ValueError that never shows the key);
    required in production, where `why` says what would go unsigned."""
    if configured:
        parse_private_key(configured)
    elif production:
        raise ValueError(f"production needs {setting}: {why} (python -m aftersales_shared.signing new)")


def check_public_keys(configured: str | None, setting: str, *, production: bool, why: str) -> None:
    """A trusted public keys setting at start: at least one key when set; required in production."""
    if configured:
        if not parse_public_keys(configured):
            raise ValueError(f"{setting} names no key")
    elif production:
        raise ValueError(f"production needs {setting}: {why}")


def dev_key(
    data_dir: Path, private_file: str = DEV_PRIVATE_FILE, public_file: str = DEV_PUBLIC_FILE
) -> Ed25519PrivateKey:
    """The embedded mode's key pair in the data folder: read, or made once (by whichever service starts
    first; the private half readable by the owner only) with its public half written beside it. Other
    key pairs (ops-console's staff tokens) have files of their own."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / private_file
    if not path.exists():
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".approval-key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = parse_private_key(path.read_text())
    public = data_dir / public_file
    text = public_text(key.public_key()) + "\n"
    if not public.exists() or public.read_text() != text:
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".approval-pub-")
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, public)
    return key


Item = TypeVar("Item", bound=Signed)  # an event that carries `signature` and `signature_key_id`


class Signer(Generic[Item]):
    """Signs events of one kind (a subclass's `message` renders what is signed) with a key read when first
    needed (or at `load`)."""

    message: Callable[[Item], bytes]

    def __init__(self, key: Ed25519PrivateKey | Callable[[], Ed25519PrivateKey]) -> None:
        self._load = key if callable(key) else (lambda: key)
        self._loaded: tuple[Ed25519PrivateKey, str, SigningKey] | None = None

    def __repr__(self) -> str:  # never show the key
        name = type(self).__name__
        return f"{name}()" if self._loaded is None else f"{name}(key_id={self.key_id!r})"

    def load(self) -> Signer[Item]:
        """Read the key now (at start), so that a bad one stops the service rather than an event."""
        self._keys()
        return self

    def _keys(self) -> tuple[Ed25519PrivateKey, str, SigningKey]:
        """The key, its id and libsodium's copy of it (which signs faster), made once: a batch signs a
        thousand results."""
        if self._loaded is None:
            key = self._load()
            self._loaded = (key, key_id(key.public_key()), SigningKey(key.private_bytes_raw()))
        return self._loaded

    @property
    def key(self) -> Ed25519PrivateKey:
        return self._keys()[0]

    @property
    def key_id(self) -> str:
        return self._keys()[1]

    def sign(self, item: Item) -> Item:
        _, kid, signing = self._keys()
        signature = base64.b64encode(signing.sign(self.message(item)).signature).decode()
        return item.model_copy(update={"signature": signature, "signature_key_id": kid})


class Verifier(Generic[Item]):
    """Checks events of one kind (a subclass's `message`) against the public keys their reader trusts."""

    message: Callable[[Item], bytes]

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self.keys = {key_id(k): k for k in keys}
        self._verifying = {kid: VerifyKey(raw_public(k)) for kid, k in self.keys.items()}  # libsodium's

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_ids={sorted(self.keys)!r})"

    async def problems(self, items: Sequence[Item]) -> list[str | None]:
        """`problem` of each item, checked on VERIFY_THREADS threads at once: libsodium lets go of the
        GIL while it verifies (about 60 µs a signature on a slow core), so a consumed batch of a thousand
        approvals takes a fraction of the time it would on the event loop."""
        if len(items) < 2 or VERIFY_THREADS < 2:
            return self._problems(items)
        parts = [items[i::VERIFY_THREADS] for i in range(VERIFY_THREADS)]
        answers = await asyncio.gather(*(asyncio.to_thread(self._problems, part) for part in parts))
        out: list[str | None] = [None] * len(items)
        for i, part_answers in enumerate(answers):
            out[i::VERIFY_THREADS] = part_answers
        return out

    def _problems(self, items: Sequence[Item]) -> list[str | None]:
        return [self.problem(item) for item in items]

    def problem(self, item: Item) -> str | None:
        """Why the item is not authenticated, or None when its signature verifies."""
        if not item.signature:
            return "it carries no signature"
        key = self._verifying.get(item.signature_key_id or "")
        if key is None:
            return f"it is signed with a key this service does not trust ({item.signature_key_id!r:.40})"
        try:
            key.verify(self.message(item), base64.b64decode(item.signature, validate=True))
        except (CryptoError, binascii.Error, ValueError):
            return f"its signature does not match its content (key {item.signature_key_id})"
        return None


class ApprovalSigner(Signer[Cashback]):
    message = staticmethod(cashback_message)


class ApprovalVerifier(Verifier[Cashback]):
    message = staticmethod(cashback_message)


class ResultSigner(Signer[PayoutResult]):
    message = staticmethod(result_message)


class ResultVerifier(Verifier[PayoutResult]):
    message = staticmethod(result_message)


def approval_signer(configured: str | None, data_dir: Path) -> ApprovalSigner:
    """case-api's: the configured key, or (development) the data folder's."""
    return ApprovalSigner(parse_private_key(configured) if configured else lambda: dev_key(data_dir))


def approval_verifier(configured: str | None, data_dir: Path) -> ApprovalVerifier:
    """payout-worker's: the configured public keys, or (development) the data folder's key pair's."""
    return ApprovalVerifier(parse_public_keys(configured) if configured else [dev_key(data_dir).public_key()])


def result_signer(configured: str | None, data_dir: Path) -> ResultSigner:
    """payout-worker's: the configured key, or (development) the data folder's result key pair."""
    return ResultSigner(
        parse_private_key(configured) if configured else lambda: dev_key(data_dir, *DEV_RESULT_FILES)
    )


def result_verifier(configured: str | None, data_dir: Path) -> ResultVerifier:
    """case-api's: the configured public keys, or (development) the data folder's result key pair's."""
    if configured:
        return ResultVerifier(parse_public_keys(configured))
    return ResultVerifier([dev_key(data_dir, *DEV_RESULT_FILES).public_key()])


# The settings a fresh pair is printed as: cashback approvals, payout results, or ops-console's staff tokens.
PAIRS = {
    "approval": ("CASE_API_APPROVAL_SIGNING_KEY", "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"),
    "payout-result": ("PAYOUT_WORKER_RESULT_SIGNING_KEY", "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS"),
    "staff-token": ("OPS_CONSOLE_TOKEN_SIGNING_KEY", "STAFF_TOKEN_PUBLIC_KEYS"),
}


def main(argv: list[str] | None = None) -> int:
    """`new [approval|payout-result|staff-token]`: a fresh key pair as the two settings. `public`: the
    public half and key id of the private key read from stdin (for rotation: add it to the verifiers' lists
    before signing)."""
    args = sys.argv[1:] if argv is None else argv
    pair = args[1] if len(args) == 2 else "approval"
    if args[:1] == ["new"] and len(args) <= 2 and pair in PAIRS:
        private_setting, public_setting = PAIRS[pair]
        key = Ed25519PrivateKey.generate()
        print(f"{private_setting}={private_text(key)}")
        print(f"{public_setting}={public_text(key.public_key())}")
        print(f"# key id {key_id(key.public_key())}")
        return 0
    if args == ["public"]:
        public = parse_private_key(sys.stdin.read()).public_key()
        print(public_text(public))
        print(f"# key id {key_id(public)}")
        return 0
    print(
        "usage: python -m aftersales_shared.signing new [approval|payout-result|staff-token] | public < key",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
