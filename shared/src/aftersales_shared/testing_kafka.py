"""The Kafka broker of the tests and benchmarks (TEST_KAFKA_BOOTSTRAP_SERVERS), and how to reach it as each
principal: a service, `warehouse`, or `admin` (a super user, for the tests that administer or use topics of
their own).

The credentials are those of `eval "$(infra/kafka/kafka.sh env)"` when the environment has them; without
them, and when the broker is the one of infra/kafka/kafka.sh, `kafka.sh env` is asked directly. A broker
without authentication (KAFKA_SECURITY_PROTOCOL unset, no kafka.sh credentials) is reached as is.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from . import topics
from .bus.acls import bindings, grant
from .bus.kafka import KafkaBus
from .bus.security import KafkaSecurity, Mechanism, Protocol

ROOT = Path(__file__).resolve().parents[3]
KAFKA_SH = ROOT / "infra" / "kafka" / "kafka.sh"
ADMIN = "admin"
SERVICES = tuple(topics.CONSUMED_BY)


@functools.cache
def dev_broker_exports() -> Mapping[str, str]:
    """What `infra/kafka/kafka.sh env` exports ({} when it has no broker set up here)."""
    if not KAFKA_SH.is_file():
        return {}
    result = subprocess.run(
        ["bash", str(KAFKA_SH), "env"], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode:
        return {}
    exports = {}
    for line in result.stdout.splitlines():
        for word in shlex.split(line.removeprefix("export ")):
            name, _, value = word.partition("=")
            exports[name] = value
    return exports


def user_variable(principal: str) -> str:
    """Where a principal's user name is: CASE_API_KAFKA_USERNAME (a service setting), KAFKA_ADMIN_USERNAME."""
    if principal in SERVICES:
        return principal.upper().replace("-", "_") + "_KAFKA_USERNAME"
    return f"KAFKA_{principal.upper()}_USERNAME"


@dataclass(frozen=True)
class BrokerAccess:
    servers: str
    exports: Mapping[str, str]  # the variables of `kafka.sh env` (or the environment that has them)

    @property
    def protocol(self) -> Protocol:
        return cast(Protocol, self.exports.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"))

    @property
    def authenticated(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def credentials(self, principal: str) -> tuple[str | None, str | None]:
        variable = user_variable(principal)
        return self.exports.get(variable), self.exports.get(variable.removesuffix("USERNAME") + "PASSWORD")

    def security(self, principal: str = ADMIN) -> KafkaSecurity:
        username, password = self.credentials(principal)
        return KafkaSecurity(
            protocol=self.protocol,
            mechanism=cast(Mechanism, self.exports.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")),
            username=username,
            password=password,
        )

    def client_options(self, principal: str = ADMIN) -> dict[str, Any]:
        """For a bare aiokafka client."""
        return {"bootstrap_servers": self.servers, **self.security(principal).client_options()}

    def bus(self, principal: str = ADMIN, **kwargs: Any) -> KafkaBus:
        return KafkaBus(self.servers, security=self.security(principal), **kwargs)

    def service_env(self, service: str, principal: str | None = None) -> dict[str, str]:
        """The environment that points `service`'s settings at this broker, as `principal` (itself)."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.servers,
            "KAFKA_SECURITY_PROTOCOL": self.protocol,
            "KAFKA_SASL_MECHANISM": self.exports.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        }
        username, password = self.credentials(principal or service)
        if username and password:
            setting = service.upper().replace("-", "_") + "_KAFKA_"
            env |= {setting + "USERNAME": username, setting + "PASSWORD": password}
        return env

    def services_env(self) -> dict[str, str]:
        """Every service as itself (what `make run` needs)."""
        return {k: v for service in SERVICES for k, v in self.service_env(service).items()}

    async def grant(self, prefix: str) -> None:
        """The platform's ACLs in the namespace `prefix` (KAFKA_TOPIC_PREFIX), as the admin."""
        if self.authenticated:
            await grant(self.servers, self.security(ADMIN), bindings(prefix))

    @contextlib.asynccontextmanager
    async def namespace(self, tag: str, partitions: int = 1) -> AsyncIterator[str]:
        """A fresh KAFKA_TOPIC_PREFIX ("tag.1a2b3c4d.") with the platform's ACLs and every topic, made by
        the admin with `partitions` each and deleted afterwards: what the test publishes there, only its
        own services read, and they read nothing of other tests that run meanwhile."""
        prefix = f"{tag}.{uuid.uuid4().hex[:8]}."
        await self.grant(prefix)
        bus = self.bus(client_id=f"{tag}-admin", partitions=partitions, topic_prefix=prefix)
        await bus.ensure_topics()
        try:
            yield prefix
        finally:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(**bus.client_options())
            await admin.start()
            try:
                await admin.delete_topics([prefix + t for t in bus.topics])
            finally:
                await admin.close()

    def tls(self) -> tuple[str, Path] | None:
        """The broker's SASL_SSL listener and the CA file that verifies it, where it has one."""
        servers = self.exports.get("TEST_KAFKA_TLS_BOOTSTRAP_SERVERS")
        cafile = self.exports.get("TEST_KAFKA_TLS_CAFILE")
        return (servers, Path(cafile)) if servers and cafile else None


def broker_access(servers: str) -> BrokerAccess:
    if "KAFKA_SECURITY_PROTOCOL" in os.environ:
        return BrokerAccess(servers, dict(os.environ))
    dev = dev_broker_exports()
    return BrokerAccess(servers, dev if dev.get("TEST_KAFKA_BOOTSTRAP_SERVERS") == servers else {})
