"""The event bus: one interface, two implementations (Apache Kafka and an embedded durable log)."""

from .base import Bus, Consumer, OutRecord, Record

__all__ = ["Bus", "Consumer", "OutRecord", "Record"]
