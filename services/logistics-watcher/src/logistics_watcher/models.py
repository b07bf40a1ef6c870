"""logistics-watcher tables."""

from aftersales_shared.auth import ApiKey
from aftersales_shared.idempotency import IdempotencyRecord
from aftersales_shared.outbox import InboxEntry, OutboxMessage

SHARED_TABLES = (ApiKey, IdempotencyRecord, OutboxMessage, InboxEntry)
