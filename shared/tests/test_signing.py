"""Approval signatures (aftersales_shared.signing): the canonical form case-api signs and payout-worker
verifies, key formats, and the data folder's development key pair."""

from __future__ import annotations

import base64
import json
import stat
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aftersales_shared.events import CashbackApproved, CashbackCancelled, Payee
from aftersales_shared.signing import (
    DEV_PRIVATE_FILE,
    DEV_PUBLIC_FILE,
    ApprovalSigner,
    ApprovalVerifier,
    approval_message,
    cancellation_message,
    dev_key,
    key_id,
    main,
    parse_private_key,
    parse_public_keys,
    private_text,
    public_text,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

SEED = bytes(range(32))  # a fixed key, for known answers


def approval(**changes: object) -> CashbackApproved:
    fields: dict[str, object] = {
        "cashback_task_id": "cb_1",
        "order_id": "o-1",
        "shop_id": "shop-a",
        "case_id": None,
        "reason": "price_difference",
        "amount": Decimal("15.00"),
        "payee": Payee(alipay_account="zhangsan@example.com", name="张三"),
        "approved_at": datetime.fromisoformat("2026-11-05T10:00:00.123456+08:00"),
    }
    return CashbackApproved.model_validate({**fields, **changes})


class TestTheCanonicalForm:
    def test_it_is_fixed(self) -> None:
        """Changing it invalidates every approval in flight: this pins it."""
        assert approval_message(approval()) == (
            b"aftersales.cashback.approved.v1\n"
            b'{"amount":"15.00","approved_at":"2026-11-05T02:00:00.123456Z","case_id":null,'
            b'"cashback_task_id":"cb_1","order_id":"o-1","payee_account":"zhangsan@example.com",'
            b'"payee_name":"\\u5f20\\u4e09","reason":"price_difference","shop_id":"shop-a"}'
        )

    def test_the_same_approval_read_back_from_the_wire_has_the_same_form(self) -> None:
        original = approval(case_id="case_1", amount="15.1")
        wire = json.loads(json.dumps(original.model_dump(mode="json")))
        assert approval_message(CashbackApproved.model_validate(wire)) == approval_message(original)

    def test_a_known_signature(self) -> None:
        """Ed25519 is deterministic: the same key and approval give these bytes in any implementation."""
        signed = ApprovalSigner(Ed25519PrivateKey.from_private_bytes(SEED)).sign(approval())
        assert signed.signature_key_id == "ed25519:56475aa75463474c"
        assert signed.signature == (
            "qNN8QaNTIDlehkaMq677b+dCRL+GAFjH7lP5KUedGT8ibtqDhcdxGqlMtSuRn9bTnQ3PGAdMLSB1e4ln/Tq1Dw=="
        )
        assert (
            ApprovalVerifier([Ed25519PrivateKey.from_private_bytes(SEED).public_key()]).problem(signed)
            is None
        )

    @pytest.mark.parametrize(
        "change",
        [
            {"amount": "15.01"},
            {"order_id": "o-2"},
            {"shop_id": "shop-b"},
            {"case_id": "case_1"},
            {"reason": "other"},
            {"payee": {"alipay_account": "zhangsan@example.com", "name": "张四"}},
            {"approved_at": "2026-11-05T10:00:00.123457+08:00"},
        ],
    )
    def test_every_field_is_covered(self, change: dict[str, object]) -> None:
        signer = ApprovalSigner(Ed25519PrivateKey.generate())
        signed = signer.sign(approval())
        changed = CashbackApproved.model_validate({**signed.model_dump(), **change})
        assert changed.signature == signed.signature  # the signature travels with the changed data
        assert ApprovalVerifier([signer.key.public_key()]).problem(changed) is not None


class TestCancellations:
    """case-api's approval key also signs its cancellations, over a form of their own."""

    def test_the_form_is_fixed_and_every_field_covered(self) -> None:
        cancellation = CashbackCancelled(
            cashback_task_id="cb_1", order_id="o-1", shop_id="shop-a", reason="r"
        )
        assert cancellation_message(cancellation) == (
            b"aftersales.cashback.cancelled.v1\n"
            b'{"cashback_task_id":"cb_1","order_id":"o-1","reason":"r","shop_id":"shop-a"}'
        )
        signer = ApprovalSigner(Ed25519PrivateKey.generate())
        verifier = ApprovalVerifier([signer.key.public_key()])
        signed = signer.sign(cancellation)
        assert verifier.problem(signed) is None
        for change in ({"cashback_task_id": "cb_2"}, {"order_id": "o-2"}, {"shop_id": "b"}, {"reason": "s"}):
            assert verifier.problem(signed.model_copy(update=change)) is not None

    def test_a_signature_over_one_kind_is_worth_nothing_as_the_other(self) -> None:
        """An approval's signature moved onto a cancellation of the same task (or back) does not verify."""
        signer = ApprovalSigner(Ed25519PrivateKey.generate())
        verifier = ApprovalVerifier([signer.key.public_key()])
        approved = signer.sign(approval())
        cancellation = CashbackCancelled(
            cashback_task_id="cb_1", order_id="o-1", shop_id="shop-a", reason="price_difference"
        )
        moved = cancellation.model_copy(
            update={"signature": approved.signature, "signature_key_id": approved.signature_key_id}
        )
        assert "does not match" in (verifier.problem(moved) or "")
        back = approval().model_copy(
            update={k: getattr(signer.sign(cancellation), k) for k in ("signature", "signature_key_id")}
        )
        assert "does not match" in (verifier.problem(back) or "")


@pytest.mark.parametrize("size", [0, 1, 2, 7, 100])
async def test_a_batch_is_checked_in_order_each_approval_on_its_own(size: int) -> None:
    """`problems` (the threads' split) answers for each approval where `problem` would, in order."""
    signer = ApprovalSigner(Ed25519PrivateKey.generate())
    batch = [signer.sign(approval(cashback_task_id=f"cb_{i}")) for i in range(size)]
    forged = {i for i in range(size) if i % 3 == 1}
    for i in forged:  # the amount changed after signing
        batch[i] = CashbackApproved.model_validate({**batch[i].model_dump(), "amount": "99.00"})
    verifier = ApprovalVerifier([signer.key.public_key()])
    answers = await verifier.problems(batch)
    assert answers == [verifier.problem(a) for a in batch]
    assert [i for i, answer in enumerate(answers) if answer is not None] == sorted(forged)


class TestKeys:
    def test_a_private_key_as_pem_or_base64(self) -> None:
        key = Ed25519PrivateKey.from_private_bytes(SEED)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        for text in (pem, private_text(key), base64.b64encode(SEED).decode()):
            assert key_id(parse_private_key(text).public_key()) == key_id(key.public_key())

    @pytest.mark.parametrize("text", ["", "nonsense", base64.b64encode(b"x" * 31).decode()])
    def test_a_bad_private_key_is_refused_without_echo(self, text: str) -> None:
        with pytest.raises(ValueError) as refused:
            parse_private_key(text)
        assert not text or text not in str(refused.value)

    def test_public_keys_listed_for_rotation(self) -> None:
        a, b = Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate().public_key()
        keys = parse_public_keys(f" {public_text(a)},\n{public_text(b)} ")
        assert [key_id(k) for k in keys] == [key_id(a), key_id(b)]

    @pytest.mark.parametrize(
        "raw",
        [bytes([1]) + bytes(31), bytes(32), bytes([0xEC]) + b"\xff" * 30 + bytes([0x7F])],
        ids=["identity", "order-4", "order-2"],
    )
    def test_a_small_order_public_key_is_refused(self, raw: bytes) -> None:
        """32 bytes that OpenSSL loads as a key, under which anyone can sign: R = the identity, S = 0."""
        if raw[0] == 1:
            Ed25519PublicKey.from_public_bytes(raw).verify(raw + bytes(32), b"any approval at all")
        text = base64.b64encode(raw).decode()
        with pytest.raises(ValueError, match="small-order"):
            parse_public_keys(f"{public_text(Ed25519PrivateKey.generate().public_key())}, {text}")

    def test_the_signer_reads_its_key_only_when_needed(self) -> None:
        calls: list[int] = []

        def load() -> Ed25519PrivateKey:
            calls.append(1)
            return Ed25519PrivateKey.from_private_bytes(SEED)

        signer = ApprovalSigner(load)
        assert calls == [] and "ed25519" not in repr(signer)
        signer.sign(approval())
        signer.sign(approval())
        assert calls == [1]
        assert base64.b64encode(SEED).decode() not in repr(signer)

    @pytest.mark.parametrize(
        ("args", "private_setting", "public_setting"),
        [
            (["new"], "CASE_API_APPROVAL_SIGNING_KEY", "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"),
            (
                ["new", "payout-result"],
                "PAYOUT_WORKER_RESULT_SIGNING_KEY",
                "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS",
            ),
            (["new", "staff-token"], "OPS_CONSOLE_TOKEN_SIGNING_KEY", "STAFF_TOKEN_PUBLIC_KEYS"),
        ],
    )
    def test_new_prints_a_matching_pair(
        self, args: list[str], private_setting: str, public_setting: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(args) == 0
        lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
        assert set(lines) == {private_setting, public_setting}
        private = parse_private_key(lines[private_setting])
        assert parse_public_keys(lines[public_setting])[0] == private.public_key()

    def test_an_unknown_pair_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["new", "payout"]) == 2
        assert "usage" in capsys.readouterr().err


def _dev_key_id(folder: str) -> str:
    return key_id(dev_key(Path(folder)).public_key())


class TestTheDevelopmentKey:
    def test_made_once_private_to_its_owner_with_its_public_half_beside_it(self, tmp_path: Path) -> None:
        key = dev_key(tmp_path)
        assert key_id(dev_key(tmp_path).public_key()) == key_id(key.public_key())
        assert stat.S_IMODE((tmp_path / DEV_PRIVATE_FILE).stat().st_mode) == 0o600
        assert (tmp_path / DEV_PUBLIC_FILE).read_text() == public_text(key.public_key()) + "\n"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left

    def test_services_starting_together_share_one_pair(self, tmp_path: Path) -> None:
        with ProcessPoolExecutor(4) as pool:
            ids = list(pool.map(_dev_key_id, [str(tmp_path / "data")] * 8))
        assert len(set(ids)) == 1
