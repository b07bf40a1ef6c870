"""JSON logs, one line per event, with buyer phone numbers and addresses masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = (
    "event_id",
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
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_SENSITIVE_KEYS = ("phone", "address", "alipay_account", "api_key", "authorization", "password")


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
        for field in CONTEXT_FIELDS:
            if (value := getattr(record, field, None)) is not None:
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
    for noisy in ("aiokafka", "uvicorn.access", "sqlalchemy.engine", "httpx", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if service:
        logging.getLogger(service).info("logging configured")
