"""What services rely on: durable publish, and consumer groups with explicit offset commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


class Consumer(Protocol):
    async def fetch(self, max_records: int = 500, timeout_ms: int = 500) -> list[Record]:
        """The next records of the assigned partitions, oldest first per partition."""

    async def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Store, per (topic, partition), the offset of the next record to read."""

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read again from `offset` (after a failed handler)."""

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), how many records this consumer has not read yet."""

    async def close(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, key: str | None, value: bytes, headers: Headers = ()) -> None:
        """Return once the record is durably stored; raise if it is not."""

    async def publish_batch(self, records: Sequence[OutRecord]) -> None:
        """Publish in the given order (per key) and return once all are durably stored."""

    async def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    async def healthy(self) -> bool: ...
