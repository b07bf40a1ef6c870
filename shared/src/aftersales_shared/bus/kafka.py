"""The Kafka bus (aiokafka): an idempotent producer (acks=all), topics and their `.dlq` created at
start-up, consumer groups with explicit offset commits.

If the broker is unreachable at start-up the service still starts: publishing raises until the
broker answers, so the outbox relay backs off and rows wait in the outbox. If it goes away later, the
idempotent producer retries its pending records forever (it never expires them), so publish_batch gives
up after `publish_timeout` and raises: the relay's transaction stays short and the relay backs off.
Records still pending may land later and the relay publishes them again: duplicates, which the
consumers' inbox makes no-ops.

With a `topic_prefix` ("staging."), every topic and consumer group on the cluster carries it, so that
several environments can share one cluster; the services keep using the names in `topics`, and records
come back under those names.

Every client authenticates as `security` says (SASL/SCRAM, TLS): the broker's ACLs (acls.py) decide what
this principal may write, read and create. A topic it may not use fails at once, naming the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CommitFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from .. import topics as topic_names
from .base import Headers, OutRecord, Record
from .security import KafkaSecurity

log = logging.getLogger(__name__)
TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailedError.errno
# What the ACLs answer to a principal that may not do something (not a broker that is away).
REFUSALS = (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError)


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        partitions: int = 6,
        replication_factor: int = 1,
        topics: Sequence[str] = topic_names.ALL,
        dead_letter_topics: Sequence[str] | None = None,
        publish_timeout: float = 30.0,
        topic_prefix: str = "",
        security: KafkaSecurity | None = None,
    ) -> None:
        """Creates `topics` at start, with the `.dlq` of `dead_letter_topics` (by default of each one)."""
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.prefix = topic_prefix
        self.security = security or KafkaSecurity()
        parked = topics if dead_letter_topics is None else dead_letter_topics
        self.topics = [*topics, *(topic_names.dlq(t) for t in parked)]
        self.publish_timeout = publish_timeout
        self._producer: AIOKafkaProducer | None = None
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._connect()
        except REFUSALS as exc:
            log.error(
                "Kafka at %s refused %s (%s): check its ACLs; events wait in the outbox",
                self.bootstrap_servers,
                self.security.username or "a client without credentials",
                exc,
            )
        except (KafkaError, OSError) as exc:
            log.warning(
                "Kafka at %s is not reachable yet (%s); events wait in the outbox",
                self.bootstrap_servers,
                exc,
            )

    async def _connect(self) -> AIOKafkaProducer:
        async with self._connecting:
            if self._producer is not None:
                return self._producer
            await self.ensure_topics()
            producer = AIOKafkaProducer(
                **self.client_options(),
                client_id=self.client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
            return producer

    async def ensure_topics(self) -> None:
        """Create the topics that do not exist yet (idempotent; several services may race)."""
        if not self.topics:
            return
        admin = AIOKafkaAdminClient(
            **self.client_options(),
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=10_000,
        )
        names = [self.prefix + t for t in self.topics]
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, self.partitions, self.replication_factor)
                for name in names
                if name not in existing
            ]
            if missing:
                # "already exists" comes back as an error code, not raised; so does a refusal
                response = await admin.create_topics(missing)
                refused = [t for t, code, *_ in response.topic_errors if code == TOPIC_AUTHORIZATION_FAILED]
                if refused:
                    raise TopicAuthorizationFailedError(f"{self.security.username} may not create {refused}")
            await self._until_led(admin, names)
        finally:
            await admin.close()

    @staticmethod
    async def _until_led(admin: AIOKafkaAdminClient, names: list[str]) -> None:
        """Until every topic has a leader for each partition: a consumer that joins its group while a
        new topic has none yet is assigned none of it (until its next metadata refresh)."""
        async with asyncio.timeout(30):
            while True:
                described = await admin.describe_topics(names)
                if refused := [
                    t["topic"] for t in described if t["error_code"] == TOPIC_AUTHORIZATION_FAILED
                ]:
                    raise TopicAuthorizationFailedError(f"may not describe {refused}")
                if len(described) == len(names) and all(
                    t["error_code"] == 0
                    and t["partitions"]
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def healthy(self) -> bool:
        producer = await self._connect()
        return bool(await producer.client.fetch_all_metadata())

    async def publish(self, topic: str, key: str | None, value: bytes, headers: Headers = ()) -> None:
        await self.publish_batch([OutRecord(topic, key, value, tuple(headers))])

    async def publish_batch(self, records: Sequence[OutRecord]) -> None:
        producer = await self._connect()
        futures: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout(self.publish_timeout):
                for r in records:
                    futures.append(
                        await producer.send(
                            self.prefix + r.topic,
                            r.value,
                            headers=list(r.headers),
                            key=r.key.encode() if r.key is not None else None,
                        )
                    )
                if futures:
                    await asyncio.wait(futures)  # cancels none of them on the timeout
        except TimeoutError:
            for future in futures:  # they may still land (or fail) later; nobody waits for them any more
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise KafkaTimeoutError(
                f"{len(records)} records not stored within {self.publish_timeout:g}s"
            ) from None
        for future in futures:
            future.result()

    def client_options(self) -> dict[str, object]:
        """Where the brokers are and how to authenticate to them: for any aiokafka client."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security.client_options()}

    async def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        consumer = AIOKafkaConsumer(
            *(self.prefix + t for t in topics),
            **self.client_options(),
            group_id=self.prefix + group,
            client_id=f"{self.client_id}-{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
            metadata_max_age_ms=30_000,  # a topic created after it joined is read within 30 s
        )
        try:
            await consumer.start()
        except BaseException:  # refused (ACLs) or unreachable: nothing left open
            await consumer.stop()
            raise
        return KafkaConsumer(consumer, self.prefix)


class KafkaConsumer:
    """Speaks the services' topic names; the cluster's carry the bus's prefix."""

    def __init__(self, consumer: AIOKafkaConsumer, prefix: str = "") -> None:
        self._consumer = consumer
        self._prefix = prefix

    def _partition(self, topic: str, partition: int) -> TopicPartition:
        return TopicPartition(self._prefix + topic, partition)

    def _name(self, physical: str) -> str:
        return physical.removeprefix(self._prefix)

    async def fetch(self, max_records: int = 500, timeout_ms: int = 500) -> list[Record]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(
                self._name(m.topic),
                m.partition,
                m.offset,
                m.key.decode() if m.key is not None else None,
                m.value or b"",
                tuple(m.headers or ()),
            )
            for messages in batches.values()
            for m in messages
        ]

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Commit the positions of the partitions this member still owns. A partition the group gave to
        another member while its records were handled (a rebalance) is not committed here: the new owner
        reads from the last committed offset, and the inbox (or the handler's own key) makes the records
        handled here a no-op there."""
        owned = self._consumer.assignment()
        offsets = {tp: o for (t, p), o in positions.items() if (tp := self._partition(t, p)) in owned}
        lost = len(positions) - len(offsets)
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except CommitFailedError:  # the group rebalanced during the commit
            lost = len(positions)
        if lost:
            log.warning(
                "offsets of %d partitions not committed: the group rebalanced; their records will be "
                "redelivered and deduplicated",
                lost,
            )

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(self._partition(topic, partition), offset)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records between this consumer's position and the end of each assigned partition."""
        out = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is not None:
                out[(self._name(tp.topic), tp.partition)] = max(0, end - await self._consumer.position(tp))
        return out

    async def close(self) -> None:
        await self._consumer.stop()
