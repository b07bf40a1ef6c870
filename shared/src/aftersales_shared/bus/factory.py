from __future__ import annotations

import logging

from .. import topics
from ..settings import ServiceSettings
from .base import Bus
from .embedded import EmbeddedBus

log = logging.getLogger(__name__)


def make_bus(settings: ServiceSettings) -> Bus:
    """Kafka when KAFKA_BOOTSTRAP_SERVERS is set, the embedded log otherwise."""
    if settings.kafka_bootstrap_servers:
        from .kafka import KafkaBus

        if settings.environment == "production" and settings.kafka_security_protocol == "SASL_PLAINTEXT":
            log.warning(
                "Kafka traffic is not encrypted (KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT): "
                "use SASL_SSL unless the brokers are on a private network"
            )
        # A service creates the topics it writes or reads, and the dead-letter topics of those it reads:
        # what its ACLs let it create (bus/acls.py). A name outside the table (a test's) creates them all.
        consumed = topics.CONSUMED_BY.get(settings.service_name)
        # (each once: case-api also reads the topics it writes, for its webhooks)
        used = (
            tuple(dict.fromkeys((*topics.produced_by(settings.service_name), *consumed)))
            if consumed
            else topics.ALL
        )
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            client_id=settings.service_name,
            topics=used,
            dead_letter_topics=consumed,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            security=settings.kafka_security(),
        )
    return EmbeddedBus(settings.event_log_path)
