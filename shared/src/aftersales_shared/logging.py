"""JSON logs, one line per event, with buyer phone numbers and addresses masked. The ids a line is about
(event, case, order, tracking number...) come from the call's `extra`, or from `log_context` around it."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

CONTEXT_FIELDS = (
    "event_id",
    "event_type",
    "action",
    "case_id",
    "order_id",
    "tracking_no",
    "payout_id",
    "cashback_task_id",
    "shop_id",
    "path",
    "status",
    "method",
    "duration_ms",
    "topic",
)
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("log_context", default=MappingProxyType({}))
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_SENSITIVE_KEYS = ("phone", "address", "alipay_account", "api_key", "authorization", "password")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside (in this task) carries these fields, unless the line sets its own."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _with_context(make: Any) -> Any:
    """A record factory that keeps the context of the call on the record: a handler may format it later,
    elsewhere (a queue, a test's capture)."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make(*args, **kwargs)
        record.log_context = _CONTEXT.get()
        return record

    return factory


logging.setLogRecordFactory(_with_context(logging.getLogRecordFactory()))


def mask_phone(text: str) -> str:
    """13812345678 -> 138****5678, wherever it appears."""
    return _PHONE.sub(r"\1****\2", text)


def mask_address(address: str) -> str:
    """Keep the first six characters (province, city), hide the rest."""
    return address[:6] + "***" if len(address) > 6 else "***"


def mask_value(key: str, value: Any) -> Any:
    lowered = key.lower()
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    if not isinstance(value, str):
        return value
    if "address" in lowered:
        return mask_address(value)
    if any(word in lowered for word in _SENSITIVE_KEYS):
        return mask_phone(value) if "phone" in lowered else value[:2] + "***"
    return mask_phone(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_phone(record.getMessage()),
        }
        context = getattr(record, "log_context", {})
        for field in CONTEXT_FIELDS:
            if (value := getattr(record, field, context.get(field))) is not None:
                line[field] = mask_value(field, value)
        if (data := getattr(record, "data", None)) is not None:
            line["data"] = mask_value("data", data)
        if record.exc_info:
            line["error"] = mask_phone(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", service: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "aiokafka",
        "aiosqlite",
        "uvicorn.access",
        "sqlalchemy.engine",
        "httpx",
        "alembic.runtime.migration",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if service:
        logging.getLogger(service).info("logging configured")
