from __future__ import annotations

from ..settings import ServiceSettings
from .base import Bus
from .embedded import EmbeddedBus


def make_bus(settings: ServiceSettings) -> Bus:
    """Kafka when KAFKA_BOOTSTRAP_SERVERS is set, the embedded log otherwise."""
    if settings.kafka_bootstrap_servers:
        from .kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap_servers,
            client_id=settings.service_name,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
    return EmbeddedBus(settings.event_log_path)
