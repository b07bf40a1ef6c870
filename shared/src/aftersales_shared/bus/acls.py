"""The Kafka ACLs of the platform's principals, made from topics.PRODUCER and topics.CONSUMED_BY.

Each service (user = its name) may
- write the topics it owns, and read their dead letters (to replay them: `<service> dlq replay TOPIC`);
- read the topics it consumes, write and read their `.dlq` (it parks what it cannot handle there);
- create the topics it writes or reads and those dead-letter topics (it creates them at start);
- read (join, commit in) its own consumer group, `dlq-replay`, and the `dlq-list-*` groups of `dlq list`.
`warehouse` may only write logistics.tracking.v1. Nobody else may do anything: the brokers run with
`allow.everyone.if.no.acl.found=false`, and only the super users (the broker itself, an admin) pass
without ACLs. An idempotent producer needs no IdempotentWrite on the cluster: Write on a topic allows it.

A namespace (KAFKA_TOPIC_PREFIX, "staging.") gets its own bindings: the topic and group names carry it.

    python -m aftersales_shared.bus.acls [--prefix P] [--user-prefix U] [--dry-run]

creates them (idempotently) as the admin: KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_MECHANISM, KAFKA_SSL_* as for the services, and KAFKA_ADMIN_USERNAME / KAFKA_ADMIN_PASSWORD.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, cast

from .. import topics
from ..deadletters import REPLAY_GROUP
from .security import KafkaSecurity, Mechanism, Protocol

LIST_GROUP_PREFIX = "dlq-list-"  # deadletters.list_parked: a group of its own per listing


class Resource(IntEnum):  # Kafka's ResourceType
    TOPIC = 2
    GROUP = 3


class Pattern(IntEnum):  # Kafka's PatternType
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):  # Kafka's AclOperation
    READ = 3
    WRITE = 4
    CREATE = 5


ALLOW = 3  # Kafka's AclPermissionType


@dataclass(frozen=True, order=True)
class Binding:
    """`principal` may `operation` on the `resource` named `name` (PREFIXED: on every name starting so)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        star = "*" if self.pattern is Pattern.PREFIXED else ""
        return f"{self.principal} {self.operation.name} {self.resource.name} {self.name}{star}"


def bindings(prefix: str = "", user_prefix: str = "") -> list[Binding]:
    """Every ACL of the platform in the namespace `prefix`, for users named `user_prefix` + principal."""
    out: list[Binding] = []

    def allow(
        principal: str, resource: Resource, name: str, *ops: Operation, pattern: Pattern = Pattern.LITERAL
    ) -> None:
        out.extend(
            Binding("User:" + user_prefix + principal, resource, prefix + name, op, pattern) for op in ops
        )

    R, W, C = Operation.READ, Operation.WRITE, Operation.CREATE
    for service, consumed in topics.CONSUMED_BY.items():
        for topic in topics.produced_by(service):
            allow(service, Resource.TOPIC, topic, W, C)
            allow(service, Resource.TOPIC, topics.dlq(topic), R)
        for topic in consumed:
            allow(service, Resource.TOPIC, topic, R, C)
            allow(service, Resource.TOPIC, topics.dlq(topic), W, R, C)
        for group in (service, REPLAY_GROUP):
            allow(service, Resource.GROUP, group, R)
        allow(service, Resource.GROUP, LIST_GROUP_PREFIX, R, pattern=Pattern.PREFIXED)
    for topic in topics.produced_by(topics.WAREHOUSE):
        allow(topics.WAREHOUSE, Resource.TOPIC, topic, W)
    return out


async def grant(bootstrap_servers: str, security: KafkaSecurity, wanted: Sequence[Binding]) -> None:
    """Create the bindings (those that exist already stay as they are), as a principal allowed to."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import for_code

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="aftersales-acls",
        request_timeout_ms=15_000,
        **security.client_options(),
    )
    await admin.start()
    try:
        # aiokafka has no create_acls yet: its CreateAcls request (v1: with pattern types), one per binding.
        from aiokafka.protocol.admin import CreateAclsRequest

        for b in wanted:
            request = CreateAclsRequest(
                int(b.resource), b.name, int(b.pattern), b.principal, "*", int(b.operation), ALLOW
            )
            response = await admin._send_request(request)
            for code, message in cast(Any, response).creation_responses:
                if code:
                    raise for_code(code)(f"{b}: {message}")
    finally:
        await admin.close()


def _security_from_env(env: dict[str, str]) -> KafkaSecurity:
    def path(name: str) -> Path | None:
        return Path(env[name]) if env.get(name) else None

    return KafkaSecurity(
        protocol=cast(Protocol, env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")),
        mechanism=cast(Mechanism, env.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")),
        username=env.get("KAFKA_ADMIN_USERNAME"),
        password=env.get("KAFKA_ADMIN_PASSWORD"),
        cafile=path("KAFKA_SSL_CAFILE"),
        certfile=path("KAFKA_SSL_CERTFILE"),
        keyfile=path("KAFKA_SSL_KEYFILE"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aftersales_shared.bus.acls", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--prefix",
        default=os.environ.get("KAFKA_TOPIC_PREFIX", ""),
        help="the namespace (KAFKA_TOPIC_PREFIX)",
    )
    parser.add_argument("--user-prefix", default="", help="the users are this + the principal's name")
    parser.add_argument("--dry-run", action="store_true", help="print the bindings, create nothing")
    args = parser.parse_args(argv)
    wanted = bindings(args.prefix, args.user_prefix)
    if args.dry_run:
        print("\n".join(map(str, wanted)))
        return 0
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not servers:
        print("KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    asyncio.run(grant(servers, _security_from_env(dict(os.environ)), wanted))
    print(f"{len(wanted)} ACLs in the namespace {args.prefix!r} on {servers}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
