"""payout-worker pays only an approval signed by a case-api key it trusts (defence in depth beside Kafka's
ACLs, issue 11 item 2): anything else published to aftersales.cashback.v1 is never sent to the provider,
opens no payout and answers nothing (a failed result would release the money of the real task a forgery
names, and block its genuine approval): it is parked on the DLQ at once, with why. Paid through the provider
simulator as a real process, whose own record shows what moved."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.clock import FrozenClock, SystemClock
from aftersales_shared.events import CashbackApproved, CloudEvent
from aftersales_shared.signing import (
    DEV_PRIVATE_FILE,
    DEV_PUBLIC_FILE,
    ApprovalSigner,
    dev_key,
    key_id,
    private_text,
    public_text,
)
from aftersales_testing import fresh_postgres_database, kafka_broker
from case_api.config import Settings as CaseApiSettings
from case_api_testing import Api, running_api
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from payout_testing import (
    NOW,
    RESULT_KEY,
    SIGNER,
    TRUSTED,
    Simulator,
    Worker,
    any_db_worker,
    approved,
    approved_as_sent,
    cancelled,
    publish,
    running_worker,
)
from payout_worker.config import Settings
from payout_worker.providers.simulator import SimulatorProvider
from test_crash import WorkerProcess, broker_worker_env

ROOT = Path(__file__).resolve().parents[3]
ATTACKER = "attacker@example.com"
FORGED_AMOUNT = "88888.88"


@pytest.fixture
async def paying(tmp_path: Path, simulator: Simulator) -> AsyncIterator[Worker]:
    provider = SimulatorProvider(simulator.url, timeout=2, qps=100)
    async for w in running_worker(tmp_path, provider, clock=FrozenClock(NOW)):
        yield w


async def pay_everything(w: Worker) -> None:
    assert (await w.call("POST", "/v1/batches/flush", "ops")).status_code == 202
    await w.tick()


def forged(task_id: str, **changes: Any) -> Any:
    """An approval nobody approved: an invented task, 88,888.88, the attacker's account."""
    return approved(task_id, amount=FORGED_AMOUNT, account=ATTACKER, **changes)


async def refused(w: Worker, event: CloudEvent, simulator: Simulator) -> str:
    """Why the event was parked: it opened no payout, answered nothing and moved no money."""
    task_id = event.data["cashback_task_id"]
    assert task_id not in await w.statuses()
    assert [r for r in await w.results() if r.data["cashback_task_id"] == task_id] == []
    assert all(t["remark"] != task_id for t in simulator.transfers()), "the simulator executed it"
    error = (await w.parked())[event.id]
    assert error.startswith("Refused: approval refused, not authenticated: ") and task_id in error
    return error


class TestForgedApprovals:
    async def test_an_unsigned_forgery_is_never_paid_nor_answered(
        self, paying: Worker, simulator: Simulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING)
        forgery = forged("cb-invented", signer=None)
        await paying.deliver(forgery, approved("cb-genuine"))
        await pay_everything(paying)
        assert await paying.statuses() == {"cb-genuine": "paid"}
        assert "no signature" in await refused(paying, forgery, simulator)
        assert [t["remark"] for t in simulator.transfers()] == ["cb-genuine"]
        assert ATTACKER not in {t["payee_account"] for t in simulator.transfers()}
        (error,) = [r for r in caplog.records if "not authenticated" in r.getMessage()]
        assert error.levelno == logging.ERROR and "cb-invented" in error.getMessage()
        assert ATTACKER not in caplog.text  # the payee is not logged

    async def test_a_forgery_signed_with_another_key_is_refused(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        attacker = ApprovalSigner(Ed25519PrivateKey.generate())
        forgery = forged("cb-invented", signer=attacker)
        await paying.deliver(forgery)
        await pay_everything(paying)
        message = await refused(paying, forgery, simulator)
        assert "does not trust" in message and attacker.key_id in message
        assert simulator.stats()["transfer_items"] == 0

    async def test_a_forgery_claiming_the_trusted_key_id_is_refused(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        attacker = ApprovalSigner(Ed25519PrivateKey.generate())
        event = forged("cb-invented", signer=attacker)
        event.data["signature_key_id"] = SIGNER.key_id
        await paying.deliver(event)
        await pay_everything(paying)
        assert "does not match" in await refused(paying, event, simulator)

    @pytest.mark.parametrize(
        "tamper",
        [
            {"amount": FORGED_AMOUNT},
            {"payee": {"alipay_account": ATTACKER, "name": "张三"}},
            {"payee": {"alipay_account": "zhangsan@example.com", "name": "李四"}},
            {"cashback_task_id": "cb-other"},
            {"approved_at": "2026-11-06T10:00:00+08:00"},
            {"case_id": "case-1"},
        ],
    )
    async def test_a_genuine_signature_over_other_data_is_refused(
        self, paying: Worker, simulator: Simulator, tamper: dict[str, Any]
    ) -> None:
        """A real approval for 12.00, its data changed on the way, its signature kept."""
        event = approved("cb-1")
        event.data.update(tamper)
        await paying.deliver(event)
        await pay_everything(paying)
        assert "does not match" in await refused(paying, event, simulator)
        assert simulator.stats()["transfer_items"] == 0

    async def test_a_genuine_approval_is_paid(self, paying: Worker, simulator: Simulator) -> None:
        await paying.deliver(approved("cb-1", amount="88.00"))
        await pay_everything(paying)
        payout = await paying.payout("cb-1")
        assert (payout.status, payout.failure_code) == ("paid", None)
        assert [(t["remark"], t["amount"]) for t in simulator.transfers()] == [("cb-1", "88.00")]

    async def test_one_forgery_in_a_chunk_of_genuine_approvals_is_the_only_one_refused(
        self, paying: Worker, simulator: Simulator, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A chunk is verified approval by approval: the forgery (a genuine signature over a changed
        payee) is parked alone and the rest applied as a chunk; every other task is paid once, delivered
        twice."""
        caplog.set_level(logging.WARNING)
        genuine = [approved(f"cb-{i}") for i in range(40)]
        forgery = approved("cb-forged")
        forgery.data["payee"] = {"alipay_account": ATTACKER, "name": "张三"}
        chunk = [*genuine[:20], forgery, *genuine[20:]]
        await paying.deliver(*chunk)
        await paying.deliver(*chunk)  # redelivered (a rebalance, a restart): nothing changes
        await pay_everything(paying)
        assert await paying.statuses() == {f"cb-{i}": "paid" for i in range(40)}
        assert sorted(t["remark"] for t in simulator.transfers()) == sorted(f"cb-{i}" for i in range(40))
        assert not [r for r in caplog.records if "one by one" in r.getMessage()], "not handled as a chunk"
        assert paying.runner.dead_lettered == 2  # once per delivery: each is a forgery as it arrives

    @pytest.mark.parametrize(
        "forgery",
        [
            forged("cb-1", signer=None),
            forged("cb-1", signer=ApprovalSigner(Ed25519PrivateKey.generate())),
            approved_as_sent("cb-1", payee=None),  # not even readable as an approval
        ],
        ids=["unsigned", "another-key", "unreadable"],
    )
    async def test_a_forgery_before_the_genuine_approval_does_not_fail_the_task(
        self, paying: Worker, simulator: Simulator, forgery: CloudEvent
    ) -> None:
        """It names a real task whose approval is on its way: it is parked, answers nothing (a failed result
        would release the task's money in case-api), and the genuine approval is then paid as usual."""
        await paying.deliver(forgery)
        assert await paying.statuses() == {} and await paying.results() == []
        await paying.deliver(approved("cb-1"))
        await pay_everything(paying)
        assert await paying.statuses() == {"cb-1": "paid"}
        assert [r.type for r in await paying.results()] == ["payouts.payout.paid.v1"]
        assert [t["payee_account"] for t in simulator.transfers()] == ["zhangsan@example.com"]

    async def test_a_forgery_after_the_genuine_approval_changes_nothing(
        self, paying: Worker, simulator: Simulator
    ) -> None:
        """R-CASHBACK-ONCE: the task already has its payout; the forgery is refused and parked."""
        await paying.deliver(approved("cb-1"))
        await paying.deliver(forged("cb-1", signer=None))
        await pay_everything(paying)
        assert await paying.statuses() == {"cb-1": "paid"}
        assert [t["payee_account"] for t in simulator.transfers()] == ["zhangsan@example.com"]
        assert [r.type for r in await paying.results()] == ["payouts.payout.paid.v1"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Worker]:
    async for w in any_db_worker(request.param, tmp_path):
        yield w


def cancellation_forgeries(task_id: str) -> list[CloudEvent]:
    """Cancellations case-api never sent: unsigned, another key's, and a genuine one's signature over
    another task."""
    attacker = ApprovalSigner(Ed25519PrivateKey.generate())
    moved = cancelled("cb-other")
    moved.data["cashback_task_id"] = task_id
    return [cancelled(task_id, signer=None), cancelled(task_id, signer=attacker), moved]


class TestForgedCancellations:
    """A cancellation stops a payment (or records a clawback against a buyer): payout-worker acts only on
    one case-api signed with its approval key. On SQLite and PostgreSQL."""

    async def test_a_forged_cancellation_does_not_stop_a_payout(self, any_db: Worker) -> None:
        await any_db.deliver(approved("cb-1"))
        forgeries = cancellation_forgeries("cb-1")
        await any_db.deliver(*forgeries)
        assert await any_db.statuses() == {"cb-1": "pending"}
        parked = await any_db.parked()
        assert set(parked) == {f.id for f in forgeries}
        assert all("cancellation refused, not authenticated" in why for why in parked.values())
        await any_db.deliver(cancelled("cb-1"))  # the genuine one: applied
        assert await any_db.statuses() == {"cb-1": "cancelled"}

    async def test_a_forged_cancellation_records_no_clawback_against_a_paid_payout(
        self, any_db: Worker
    ) -> None:
        await any_db.deliver(approved("cb-1"))
        await pay_everything(any_db)
        await any_db.deliver(*cancellation_forgeries("cb-1"))
        payout = await any_db.payout("cb-1")
        assert (payout.status, payout.clawback_requested_at) == ("paid", None)
        assert any_db.runner.dead_lettered == 3


class TestKeyRotation:
    async def test_every_listed_key_is_trusted_and_no_other(self, tmp_path: Path) -> None:
        new = ApprovalSigner(Ed25519PrivateKey.generate())
        retired = ApprovalSigner(Ed25519PrivateKey.generate())
        keys = f"{TRUSTED['approval_public_keys']}, {public_text(new.key.public_key())}"
        async for w in running_worker(tmp_path, approval_public_keys=keys):
            await w.deliver(
                approved("cb-old"), approved("cb-new", signer=new), approved("cb-retired", signer=retired)
            )
            assert await w.statuses() == {"cb-old": "pending", "cb-new": "pending"}
            assert w.runner.dead_lettered == 1  # cb-retired: signed with a key no longer trusted

    def test_the_keys_are_base64_or_pem_and_checked_at_start(self) -> None:
        key = Ed25519PrivateKey.generate().public_key()
        pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        assert list(Settings(approval_public_keys=pem).approval_verifier().keys) == [key_id(key)]
        for bad in ("not-base64!", base64.b64encode(b"short").decode(), " , "):
            with pytest.raises(ValueError, match=r"public key|names no key"):
                Settings(approval_public_keys=bad)


# The provider production accepts: Alipay in certificate mode (the files are read when the provider starts).
ALIPAY = {
    "provider": "alipay",
    "alipay_app_id": "2021000000000001",
    "alipay_private_key": "-----BEGIN PRIVATE KEY-----...",
    "alipay_app_cert": "/run/secrets/appCertPublicKey.crt",
    "alipay_public_cert": "/run/secrets/alipayCertPublicKey_RSA2.crt",
    "alipay_root_cert": "/run/secrets/alipayRootCert.crt",
}


class TestProduction:
    PRODUCTION = {
        "environment": "production",
        "database_url": "postgresql+asyncpg://u:p@db:5432/",
        "kafka_bootstrap_servers": "kafka:9092",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_username": "svc",
        "kafka_password": "secret",
    }

    def test_it_refuses_to_start_without_the_keys(self) -> None:
        with pytest.raises(ValueError, match="PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"):
            Settings(**self.PRODUCTION, **ALIPAY)
        with pytest.raises(ValueError, match="PAYOUT_WORKER_RESULT_SIGNING_KEY"):
            Settings(**self.PRODUCTION, **ALIPAY, approval_public_keys=TRUSTED["approval_public_keys"])
        with pytest.raises(ValueError, match="not an Ed25519 private key") as refused:
            Settings(**self.PRODUCTION, **ALIPAY, **TRUSTED | {"result_signing_key": "c2VjcmV0" * 5})
        assert "c2VjcmV0" not in str(refused.value)  # the value is never echoed
        Settings(**self.PRODUCTION, **ALIPAY, **TRUSTED)

    def test_case_api_refuses_to_start_without_its_keys(self) -> None:
        with pytest.raises(ValueError, match="CASE_API_APPROVAL_SIGNING_KEY"):
            CaseApiSettings(**self.PRODUCTION)
        with pytest.raises(ValueError, match="not an Ed25519 private key") as refused:
            CaseApiSettings(**self.PRODUCTION, approval_signing_key="c2VjcmV0" * 5)
        assert "c2VjcmV0" not in str(refused.value)  # the value is never echoed
        signing = private_text(Ed25519PrivateKey.generate())
        with pytest.raises(ValueError, match="CASE_API_PAYOUT_RESULT_PUBLIC_KEYS"):
            CaseApiSettings(**self.PRODUCTION, approval_signing_key=signing)
        with pytest.raises(ValueError, match="names no key"):
            CaseApiSettings(**self.PRODUCTION, approval_signing_key=signing, payout_result_public_keys=" , ")
        CaseApiSettings(
            **self.PRODUCTION,
            approval_signing_key=signing,
            payout_result_public_keys=public_text(RESULT_KEY.public_key()),
        )


class TestTheDataFolderConvention:
    """`make run`: case-api and payout-worker share DATA_DIR and, with no key configured, the key pair in
    it, made by whichever starts first."""

    async def test_an_approval_case_api_signs_is_paid_and_one_it_did_not_is_not(self, tmp_path: Path) -> None:
        async for api in running_api(CaseApiSettings(data_dir=tmp_path), tmp_path):
            task = await approve_a_task(api)
            async for w in running_worker(tmp_path, approval_public_keys=None):
                for _ in range(200):  # case-api's relay publishes after its commit
                    await w.consume()
                    if task["id"] in await w.statuses():
                        break
                    await asyncio.sleep(0.05)
                await w.deliver(forged("cb-invented", signer=None))
                assert await w.statuses() == {task["id"]: "pending"}  # cb-invented: parked
        assert (tmp_path / DEV_PRIVATE_FILE).stat().st_mode & 0o077 == 0
        public = (tmp_path / DEV_PUBLIC_FILE).read_text().strip()
        assert public == public_text(dev_key(tmp_path).public_key())

    def test_make_run_gives_payout_worker_the_public_half_of_a_configured_key(self) -> None:
        spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
        assert spec is not None and spec.loader is not None
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
        key = Ed25519PrivateKey.generate()
        env = {"CASE_API_APPROVAL_SIGNING_KEY": private_text(key)}
        run.approval_keys(env)
        assert env["PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"] == public_text(key.public_key())
        mine = {
            "CASE_API_APPROVAL_SIGNING_KEY": private_text(key),
            "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS": "a,b",
        }
        run.approval_keys(mine)
        assert mine["PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS"] == "a,b"  # what the operator set stands
        nothing: dict[str, str] = {}
        run.approval_keys(nothing)
        assert nothing == {}  # the data folder's pair, then

    def test_the_pair_is_made_once(self, tmp_path: Path) -> None:
        first = dev_key(tmp_path / "new")
        assert public_text(dev_key(tmp_path / "new").public_key()) == public_text(first.public_key())


async def approve_a_task(api: Api) -> dict[str, Any]:
    await api.put_order()
    body = {
        "order_id": "o-1",
        "line_id": "L1",
        "reason": "price_difference",
        "amount": "15.00",
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }
    created = await api.call("POST", "/v1/cashback-tasks", "support", json=body)
    assert created.status_code == 201, created.text
    task = created.json()
    approved_ = await api.call("POST", f"/v1/cashback-tasks/{task['id']}/approve", "support")
    assert approved_.status_code == 200, approved_.text
    return dict(task)


def test_approved_as_sent_keeps_the_tests_signing_honest() -> None:
    """The harness signs what case-api would send; changed data no longer verifies under the old
    signature (a check that the tamper tests tamper)."""
    event = approved_as_sent("cb-1", amount="13.00")
    approval = CashbackApproved.model_validate(event.data)
    assert approval.signature and approval.signature != approved("cb-1").data["signature"]


@pytest.mark.kafka
@pytest.mark.postgres
class TestOnTheBroker:
    async def test_forgeries_with_case_apis_own_kafka_password_are_not_paid(
        self, tmp_path: Path, simulator: Simulator
    ) -> None:
        """A leaked Kafka password of case-api's (the one principal the ACLs let write approvals) is enough
        to publish, not to be paid: a worker process on Apache Kafka and PostgreSQL refuses every forgery,
        sends only the genuine approval to the simulator, answers only it, and parks every forgery."""
        broker = kafka_broker()
        run = uuid.uuid4().hex[:8]
        genuine, unsigned, other_key, tampered = (
            f"cb-{kind}-{run}" for kind in ("ok", "nosig", "key", "amt")
        )
        events = [
            approved(genuine, when=SystemClock().now()),
            forged(unsigned, signer=None),
            forged(other_key, signer=ApprovalSigner(Ed25519PrivateKey.generate())),
            approved(tampered),
        ]
        events[3].data["amount"] = FORGED_AMOUNT  # a genuine signature over 12.00
        async with broker.namespace("payout-forgery") as prefix:
            publisher = broker.bus(
                "case-api",
                client_id="leaked-case-api-password",
                topic_prefix=prefix,
                topics=[topics.CASHBACK],
                dead_letter_topics=[],
            )
            await publisher.start()
            try:
                async with fresh_postgres_database("payout_worker_forgery") as url:
                    env = broker_worker_env(tmp_path, simulator, broker, url, prefix)
                    worker = WorkerProcess(env, int(env["PAYOUT_WORKER_PORT"]))
                    try:
                        worker.start()
                        await publish(publisher, events)
                        worker.wait_for(lambda: len(worker.payouts()) == 1, "the approvals to be consumed")
                        assert worker.call("POST", "/v1/batches/flush").status_code == 202
                        worker.wait_for(
                            lambda: payout_of(worker, genuine).status == "paid", "the genuine one to be paid"
                        )
                        parked = await on_the_broker(broker, prefix, topics.dlq(topics.CASHBACK), 3)
                        assert len(worker.payouts()) == 1
                    finally:
                        worker.stop()
            finally:
                await publisher.stop()
            results = await on_the_broker(broker, prefix, topics.PAYOUT_RESULTS, 1)
        assert [t["remark"] for t in simulator.transfers()] == [genuine]
        assert set(parked) == {unsigned, other_key, tampered}
        assert all(w.startswith("Refused: approval refused, not authenticated: ") for w in parked.values())
        assert "no signature" in parked[unsigned] and "does not trust" in parked[other_key]
        assert "does not match" in parked[tampered]
        assert results == {genuine: "payouts.payout.paid.v1"}


def payout_of(worker: WorkerProcess, task_id: str) -> Any:
    (payout,) = [p for p in worker.payouts() if p.cashback_task_id == task_id]
    return payout


async def on_the_broker(broker: Any, prefix: str, topic: str, count: int) -> dict[str, str]:
    """The first `count` records of `topic` in the namespace, read as the admin, by the cashback task
    they name: the event type, or for a parked record the error it was parked with."""
    bus = broker.bus(client_id="topic-reader", topic_prefix=prefix)
    await bus.start()
    found: dict[str, str] = {}
    try:
        consumer = await bus.consumer(f"topic-reader-{uuid.uuid4().hex[:8]}", [topic])
        for _ in range(120):
            for record in await consumer.fetch(max_records=1000, timeout_ms=500):
                event = CloudEvent.from_bytes(record.value)
                error = dict(record.headers).get("error")
                found[event.data["cashback_task_id"]] = error.decode() if error else event.type
            if len(found) >= count:
                break
    finally:
        await bus.stop()
    return found
