"""Who may do what on the bus: the brokers authenticate every client (SASL/SCRAM, also over TLS) and each
principal may write only the topics it owns and read only those it consumes (bus/acls.py, made from
topics.PRODUCER and topics.CONSUMED_BY). A forged `aftersales.cashback.approved.v1` from anyone but
case-api never reaches the topic."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aftersales_shared import deadletters, topics
from aftersales_shared.bus.acls import Binding, Operation, Pattern, Resource, bindings
from aftersales_shared.bus.factory import make_bus
from aftersales_shared.bus.kafka import KafkaBus
from aftersales_shared.bus.security import KafkaSecurity
from aftersales_shared.events import CloudEvent
from aftersales_shared.settings import ServiceSettings
from aftersales_shared.testing_kafka import SERVICES, BrokerAccess
from aftersales_testing import infra_missing, kafka_broker
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

WAREHOUSE = topics.WAREHOUSE
PRINCIPALS = (*SERVICES, WAREHOUSE)
EVERY_TOPIC = (*topics.ALL, *map(topics.dlq, topics.ALL))
SERVERS = "broker-1:9092"


def forged_approval() -> bytes:
    """What the adversarial review published: an invented task, 88,888.88, an attacker's account."""
    return CloudEvent(
        id=f"evt_{uuid.uuid4().hex}",
        source="/forged",
        type="aftersales.cashback.approved.v1",
        subject="cb_invented",
        time=dt.datetime.now(dt.UTC),
        data={"task_id": "cb_invented", "amount": "88888.88", "payee_account": "attacker@example.com"},
    ).to_bytes()


class CaseApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CASE_API_", extra="ignore")


def may_write(principal: str) -> set[str]:
    return {*topics.produced_by(principal), *map(topics.dlq, topics.CONSUMED_BY.get(principal, ()))}


def may_read(principal: str) -> set[str]:
    """What it consumes, and the dead letters: those it parks, and, for a service, those of its own
    topics (it replays them). The warehouse reads nothing."""
    if principal not in SERVICES:
        return set()
    consumed = topics.CONSUMED_BY[principal]
    return {*consumed, *map(topics.dlq, consumed), *map(topics.dlq, topics.produced_by(principal))}


@pytest.mark.usefixtures("no_kafka_environment")
class TestSettings:
    """KAFKA_SECURITY_PROTOCOL and friends; each service's own <PREFIX>KAFKA_USERNAME / _PASSWORD."""

    def test_production_refuses_a_broker_without_authentication(self) -> None:
        def production(**kafka: str) -> ServiceSettings:
            return ServiceSettings.model_validate(
                {"environment": "production", "database_url": "postgresql+asyncpg://u:p@db/"}
                | {"kafka_bootstrap_servers": SERVERS, **kafka}
            )

        with pytest.raises(ValidationError, match="PLAINTEXT"):
            production()
        with pytest.raises(ValidationError, match="KAFKA_SSL_CERTFILE"):
            production(kafka_security_protocol="SSL")
        settings = production(
            kafka_security_protocol="SASL_SSL", kafka_username="case-api", kafka_password="secret"
        )
        assert settings.kafka_security() == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "case-api", "secret")

    def test_sasl_without_this_services_credentials_is_refused_in_any_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", SERVERS)
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        # another service's credentials are not this one's
        monkeypatch.setenv("LOGISTICS_WATCHER_KAFKA_USERNAME", "logistics-watcher")
        monkeypatch.setenv("LOGISTICS_WATCHER_KAFKA_PASSWORD", "secret")
        with pytest.raises(ValidationError, match="CASE_API_KAFKA_USERNAME and CASE_API_KAFKA_PASSWORD"):
            CaseApiSettings()
        monkeypatch.setenv("CASE_API_KAFKA_USERNAME", "case-api")
        monkeypatch.setenv("CASE_API_KAFKA_PASSWORD", "its-own")
        security = CaseApiSettings().kafka_security()
        assert (security.username, security.password) == ("case-api", "its-own")
        assert "its-own" not in repr(security)

    def test_the_embedded_mode_needs_no_credentials(self) -> None:
        assert ServiceSettings(kafka_security_protocol="SASL_SSL").kafka_bootstrap_servers is None

    def test_client_options_for_sasl_over_tls_verify_the_brokers_certificate(self, tmp_path: Path) -> None:
        cafile = self_signed_ca(tmp_path)
        options = KafkaSecurity(
            "SASL_SSL", "SCRAM-SHA-512", "payout-worker", "pw", cafile=cafile
        ).client_options()
        context = options.pop("ssl_context")
        assert options == {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "payout-worker",
            "sasl_plain_password": "pw",
        }
        assert context.check_hostname and [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "test CA"),),)
        ]
        assert KafkaSecurity().client_options() == {"security_protocol": "PLAINTEXT"}


def self_signed_ca(folder: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.usefixtures("no_kafka_environment")
class TestAclTable:
    def test_each_topic_is_written_by_its_owner_and_the_consumers_of_its_dead_letters_only(self) -> None:
        writers: dict[str, set[str]] = {}
        for b in bindings():
            if b.operation is Operation.WRITE:
                writers.setdefault(b.name, set()).add(b.principal.removeprefix("User:"))
        assert writers == {
            **{t: {topics.PRODUCER[t]} for t in topics.ALL},
            **{
                topics.dlq(t): {s for s, consumed in topics.CONSUMED_BY.items() if t in consumed}
                for t in topics.ALL
            },
        }
        assert writers[topics.CASHBACK] == {"case-api"}

    def test_a_namespace_and_user_prefix_carry_into_every_binding(self) -> None:
        spaced = bindings("staging.", "stg-")
        assert len(spaced) == len(bindings())
        assert all(b.name.startswith("staging.") and b.principal.startswith("User:stg-") for b in spaced)
        assert (
            Binding(
                "User:stg-payout-worker",
                Resource.GROUP,
                "staging.dlq-list-",
                Operation.READ,
                Pattern.PREFIXED,
            )
            in spaced
        )

    def test_production_over_sasl_plaintext_warns_that_the_traffic_is_not_encrypted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = ServiceSettings.model_validate(
            {
                "environment": "production",
                "database_url": "postgresql+asyncpg://u:p@db/",
                "kafka_bootstrap_servers": SERVERS,
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_username": "case-api",
                "kafka_password": "secret",
            }
        )
        make_bus(settings)
        assert "not encrypted" in caplog.text
        caplog.clear()
        make_bus(settings.model_copy(update={"kafka_security_protocol": "SASL_SSL"}))
        assert "not encrypted" not in caplog.text

    def test_each_service_creates_only_the_topics_it_uses(self) -> None:
        for service in SERVICES:
            bus = make_bus(ServiceSettings(service_name=service, kafka_bootstrap_servers=SERVERS))
            assert isinstance(bus, KafkaBus)
            consumed = topics.CONSUMED_BY[service]
            assert set(bus.topics) == {*topics.produced_by(service), *consumed, *map(topics.dlq, consumed)}


@pytest.fixture
def broker() -> BrokerAccess:
    access = kafka_broker()
    if not access.authenticated:
        infra_missing(
            "A Kafka broker with SASL and ACLs",
            "run `make kafka-up` (infra/kafka/kafka.sh), or export its `kafka.sh env`",
        )
    return access


@pytest.fixture
async def namespace(broker: BrokerAccess) -> AsyncIterator[str]:
    """A fresh KAFKA_TOPIC_PREFIX with the platform's ACLs and every topic (made by the admin)."""
    async with broker.namespace("acl") as prefix:
        yield prefix


async def writes(broker: BrokerAccess, principal: str, prefix: str, names: tuple[str, ...]) -> set[str]:
    """The topics among `names` that an idempotent producer of `principal` (as the services') could write."""
    producer = AIOKafkaProducer(
        **broker.client_options(principal), enable_idempotence=True, acks="all", request_timeout_ms=10_000
    )
    await producer.start()
    try:

        async def one(name: str) -> str | None:
            try:
                await producer.send_and_wait(prefix + name, b"probe")
                return name
            except TopicAuthorizationFailedError:
                return None

        return {n for n in await asyncio.gather(*map(one, names)) if n}
    finally:
        await producer.stop()


async def reads(broker: BrokerAccess, principal: str, prefix: str, names: tuple[str, ...]) -> set[str]:
    async def one(name: str) -> str | None:
        consumer = AIOKafkaConsumer(
            prefix + name,
            **broker.client_options(principal),
            enable_auto_commit=False,
            request_timeout_ms=10_000,
        )
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=300)
            return name
        except TopicAuthorizationFailedError:
            return None
        finally:
            await consumer.stop()

    return {n for n in await asyncio.gather(*map(one, names)) if n}


@pytest.mark.kafka
class TestOnTheBroker:
    async def test_a_client_without_credentials_cannot_even_connect(self, broker: BrokerAccess) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.servers, request_timeout_ms=5_000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()

    async def test_a_wrong_password_is_refused(self, broker: BrokerAccess) -> None:
        security = KafkaSecurity(broker.protocol, username="case-api", password="not-its-password")
        producer = AIOKafkaProducer(bootstrap_servers=broker.servers, **security.client_options())
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()

    @pytest.mark.parametrize("principal", ["logistics-watcher", "payout-worker", WAREHOUSE])
    async def test_only_case_api_may_publish_a_cashback_approval(
        self, broker: BrokerAccess, principal: str
    ) -> None:
        """On the topic names the services use, with the ACLs `kafka.sh up` made (nothing lands there)."""
        # The topic exists (as it does once case-api ran): a refusal, not a wait for an unknown topic.
        await broker.bus(
            client_id="acl-test-admin", topics=[topics.CASHBACK], dead_letter_topics=[]
        ).ensure_topics()
        producer = AIOKafkaProducer(**broker.client_options(principal), enable_idempotence=True, acks="all")
        await producer.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topics.CASHBACK, forged_approval())
        finally:
            await producer.stop()

    @pytest.mark.parametrize("principal", PRINCIPALS)
    async def test_each_principal_writes_exactly_the_topics_it_owns(
        self, broker: BrokerAccess, namespace: str, principal: str
    ) -> None:
        assert await writes(broker, principal, namespace, EVERY_TOPIC) == may_write(principal)

    @pytest.mark.parametrize("principal", PRINCIPALS)
    async def test_each_principal_reads_exactly_the_topics_it_consumes(
        self, broker: BrokerAccess, namespace: str, principal: str
    ) -> None:
        assert await reads(broker, principal, namespace, EVERY_TOPIC) == may_read(principal)

    async def test_the_warehouse_publishes_tracking_scans_and_the_watcher_reads_them(
        self, broker: BrokerAccess, namespace: str
    ) -> None:
        warehouse = broker.bus(WAREHOUSE, client_id="warehouse-test", topic_prefix=namespace, topics=[])
        watcher = broker.bus("logistics-watcher", client_id="watcher-test", topic_prefix=namespace, topics=[])
        try:
            await warehouse.publish(topics.TRACKING, "SF1", b"scan")
            consumer = await watcher.consumer("logistics-watcher", [topics.TRACKING])
            try:
                got = []
                for _ in range(60):
                    if got := await consumer.fetch(timeout_ms=500):
                        break
            finally:
                await consumer.close()
            assert [(r.topic, r.key, r.value) for r in got] == [(topics.TRACKING, "SF1", b"scan")]
        finally:
            await warehouse.stop()
            await watcher.stop()

    async def test_a_service_may_not_join_another_services_group(
        self, broker: BrokerAccess, namespace: str
    ) -> None:
        watcher = broker.bus("logistics-watcher", client_id="watcher-test", topic_prefix=namespace)
        with pytest.raises(GroupAuthorizationFailedError):
            consumer = await watcher.consumer("payout-worker", [topics.TRACKING])
            try:
                await consumer.fetch(timeout_ms=3000)
            finally:
                await consumer.close()

    @pytest.mark.parametrize("service", SERVICES)
    async def test_each_service_starts_with_its_own_credentials_creating_its_topics(
        self, broker: BrokerAccess, service: str
    ) -> None:
        prefix = f"svc.{uuid.uuid4().hex[:8]}."
        await broker.grant(prefix)
        username, password = broker.credentials(service)
        settings = ServiceSettings(
            service_name=service,
            kafka_bootstrap_servers=broker.servers,
            kafka_security_protocol=broker.protocol,
            kafka_username=username,
            kafka_password=password,
            kafka_topic_prefix=prefix,
            kafka_topic_partitions=1,
        )
        bus = make_bus(settings)
        assert isinstance(bus, KafkaBus)
        try:
            await bus.ensure_topics()  # raises at once if a topic may not be created or described
            for topic in topics.produced_by(service):
                await bus.publish(topic, "k", b"v")
        finally:
            await bus.stop()

    async def test_a_topic_a_service_may_not_create_fails_at_once_naming_it(
        self, broker: BrokerAccess
    ) -> None:
        prefix = f"svc.{uuid.uuid4().hex[:8]}."
        await broker.grant(prefix)
        bus = broker.bus(
            "logistics-watcher", client_id="watcher-test", topics=[topics.CASHBACK], topic_prefix=prefix
        )
        async with asyncio.timeout(15):
            with pytest.raises(TopicAuthorizationFailedError, match=topics.CASHBACK):
                await bus.ensure_topics()

    async def test_a_service_its_acls_refuse_says_so_at_start(
        self, broker: BrokerAccess, caplog: pytest.LogCaptureFixture
    ) -> None:
        prefix = f"svc.{uuid.uuid4().hex[:8]}."
        await broker.grant(prefix)
        bus = broker.bus("payout-worker", client_id="pw-test", topics=[topics.CASES], topic_prefix=prefix)
        await bus.start()  # the service keeps starting: its events wait in the outbox
        await bus.stop()
        assert any(
            r.levelname == "ERROR" and "refused payout-worker" in r.getMessage() and "ACLs" in r.getMessage()
            for r in caplog.records
        ), caplog.text

    async def test_dead_letters_are_listed_by_their_consumer_and_replayed_by_the_topics_owner(
        self, broker: BrokerAccess, namespace: str
    ) -> None:
        payout_worker = broker.bus("payout-worker", client_id="pw-test", topic_prefix=namespace, topics=[])
        case_api = broker.bus("case-api", client_id="ca-test", topic_prefix=namespace, topics=[])
        try:
            approval = forged_approval()
            await payout_worker.publish(topics.dlq(topics.CASHBACK), "cb_1", approval, [("error", b"boom")])
            [parked] = await deadletters.list_parked(payout_worker, topics.CASHBACK, wait=5)
            assert parked["key"] == "cb_1"
            # a replay publishes to aftersales.cashback.v1, which only case-api writes
            with pytest.raises(TopicAuthorizationFailedError):
                await deadletters.replay(payout_worker, topics.CASHBACK, wait=5)
            assert await deadletters.replay(case_api, topics.CASHBACK, wait=5) == 1
        finally:
            await payout_worker.stop()
            await case_api.stop()

    async def test_sasl_over_tls_with_the_brokers_ca(self, broker: BrokerAccess, namespace: str) -> None:
        tls = broker.tls()
        if tls is None:
            infra_missing(
                "The broker's SASL_SSL listener", "infra/kafka/kafka.sh makes one where openssl is installed"
            )
            return
        servers, cafile = tls
        own = broker.security("case-api")
        security = KafkaSecurity("SASL_SSL", own.mechanism, own.username, own.password, cafile=cafile)
        bus = KafkaBus(servers, client_id="tls-test", topics=[], topic_prefix=namespace, security=security)
        try:
            await bus.publish(topics.CASES, "order-1", b"over TLS")
        finally:
            await bus.stop()
        untrusted = KafkaSecurity("SASL_SSL", own.mechanism, own.username, own.password)  # the system's CAs
        producer = AIOKafkaProducer(bootstrap_servers=servers, **untrusted.client_options())
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()
