"""JSON logs, one line per event, with buyer phones, addresses, names and payee accounts masked. The ids a
line is about (event, case, order, tracking number...) come from the call's `extra`, or from `log_context`
around it."""

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
    "request_id",
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


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside (in this task) carries these fields, unless the line sets its own."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current(field: str) -> Any:
    """A field of the log context this code runs in (the request's id while a request is served)."""
    return _CONTEXT.get().get(field)


def _with_context(make: Any) -> Any:
    """A record factory that keeps the context of the call on the record: a handler may format it later,
    elsewhere (a queue, a test's capture)."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make(*args, **kwargs)
        record.log_context = _CONTEXT.get()
        return record

    return factory


logging.setLogRecordFactory(_with_context(logging.getLogRecordFactory()))


# Buyer data in logs (CONVENTIONS: buyer phone and address masked): by key where a line carries structured
# data, by pattern in free text (messages, errors, tracebacks, dead-letter headers).
_CJK = "\u4e00-\u9fff"
_SEP = r"[ \t.\-]?"
# Mobiles: 13812345678, 138 1234 5678, 138-1234-5678, +86 138..., 0086-138..., (+86)138...
_MOBILE = re.compile(
    rf"(?<![0-9A-Za-z])(?P<cc>(?:\(?(?:\+|00)86\)?|86(?=[ \t\-])){_SEP})?"
    rf"(?P<head>1[3-9]\d){_SEP}\d{{4}}{_SEP}(?P<tail>\d{{4}})(?![0-9A-Za-z])"
)
# Landlines: (0571) 8888 8888, 0571-88888888, 010 1234 5678, +86 571 8888 8888, 0086 (0)571-88888888
_LANDLINE = re.compile(
    rf"(?<![0-9A-Za-z])(?P<cc>(?:\+|00)86{_SEP}(?:\(0\)\s?)?)?"
    rf"(?P<area>\(0?[1-9]\d{{1,2}}\)|(?(cc)0?|0)[1-9]\d{{1,2}}){_SEP}"
    rf"\d{{3,4}}{_SEP}(?P<tail>\d{{4}})(?![0-9A-Za-z])"
)
_EMAIL = re.compile(r"(?<![\w.+\-])([\w.+\-]{1,64})@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
_ALIPAY_USER_ID = re.compile(r"(?<!\d)2088\d{8}(\d{4})(?!\d)")
# A run of Chinese address text (digits, spaces before a digit or a character, house-number punctuation)...
_ADDRESS_RUN = re.compile(
    rf"[{_CJK}](?:[{_CJK}0-9#\-－()（）]|[ \t](?=[{_CJK}0-9])|[A-Za-z](?=[{_CJK}0-9]))*"
)
# ... is an address when it names a street or a building part, and a region or a number.
_STREET = re.compile(r"路|街|道|巷|弄|胡同|号|栋|幢|楼|单元|室|村|组|小区|大厦|公寓|花园")
_REGION = re.compile(r"省|自治区|市|区|县|镇|乡|旗|[0-9]")
_REGION_PREFIX = re.compile(
    r"^(?:[^\s0-9路街道巷弄号市区县]{1,6}?(?:省|自治区|特别行政区))?(?:[^\s0-9路街道巷弄号省区县]{1,6}?市)?"
)
# "key": "value", 'key': 'value', key='value' and "key": 123 (JSON, reprs of dicts and models, errors).
_KEY_WORDS = (
    "phone|mobile|tel|telephone|address|account|identity|buyer|payee|receiver|consignee"
    "|password|secret|authorization|api_key"
)
_NAME_KEY = r"(?:(?:buyer|payee|receiver|consignee|real|full|user|customer|contact)_)?name"
_KEYED = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9_])(?:(?:[A-Za-z]+_)*(?:{_KEY_WORDS})(?:_[A-Za-z]+)*|{_NAME_KEY}))"
    r"""(?P<q>["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?:'(?P<v1>(?:[^'\\\n]|\\.)*)'|"(?P<v2>(?:[^"\\\n]|\\.)*)"|(?P<v3>[^\s,;:='"(){}\[\]<>&][^\s,;'"(){}\[\]<>&]*))""",
    re.IGNORECASE,
)
# Chinese labels in carriers' and storefronts' free text: 收件人：张三, 签收人: 李四, 联系人 王五.
_LABELLED_NAME = re.compile(
    rf"(?P<label>收件人|收货人|签收人|寄件人|联系人|取件人|买家|姓名)(?P<sep>\s*[：:]\s*|\s+)(?P<name>[{_CJK}·]{{1,8}})"
)
# pydantic's errors quote what they refused: input_value='...' (a dict's pairs are masked by key).
_INPUT_VALUE = re.compile(r"""input_value=(?:'(?:[^'\\\n]|\\.)*'?|"(?:[^"\\\n]|\\.)*"?)""")
# PostgreSQL's DETAIL quotes the values of a key or a row; asyncpg quotes an argument it cannot encode.
_PG_KEY = re.compile(r"(Key \(.*?\)=\().*(\)[^()\n]*)$", re.MULTILINE)
# SQLAlchemy's errors quote a statement's parameters unless the engine hides them (make_engine does).
_SQL_PARAMETERS = re.compile(r"^\[parameters: .*$", re.MULTILINE)
_PG_ROW = re.compile(r"(Failing row contains \().*(\)[^()\n]*)$", re.MULTILINE)
_PG_ARGUMENT = re.compile(
    r"(invalid input for query argument \$\d+[^:\n]*: ).*?(?= \((?:[^()\n]|\([^()\n]*\))*\)$|$)", re.MULTILINE
)

_NAME_FIELD = re.compile(rf"{_NAME_KEY}|buyer|payee|receiver|consignee", re.IGNORECASE)
_SECRET_KEYS = ("api_key", "authorization", "password", "secret")


def _mobile(match: re.Match[str]) -> str:
    return f"{'+86 ' if match['cc'] else ''}{match['head']}****{match['tail']}"


def _landline(match: re.Match[str]) -> str:
    area = match["area"]
    return f"{'+86 ' if match['cc'] else ''}{area}{' ' if area.startswith('(') else '-'}****{match['tail']}"


def mask_phone(text: str) -> str:
    """Phone numbers in every common form, wherever they appear: 13812345678, +86 138 1234 5678 and
    138-1234-5678 -> 138****5678 (with +86 if it had one); (0571) 8888 8888 -> (0571) ****8888."""
    return _LANDLINE.sub(_landline, _MOBILE.sub(_mobile, text))


def mask_email(text: str) -> str:
    """zhangsan@example.com -> zh***@example.com (an Alipay account is often an email)."""
    return _EMAIL.sub(lambda m: f"{m[1][:2]}***@{m[2]}", text)


def mask_address(address: str) -> str:
    """Keep the province and city, hide the rest: 浙江省杭州市西湖区文三路 1 号 -> 浙江省杭州市***."""
    region = _REGION_PREFIX.match(address.strip())
    return (region[0] if region else "") + "***"


def mask_name(name: str) -> str:
    """张三 -> 张*, Zhang San -> Z***: the surname's first character only."""
    name = name.strip()
    return name[:1] + ("*" if re.match(f"[{_CJK}]", name) else "***") if name else name


def mask_account(account: str) -> str:
    """A payee account: an email, a phone or an Alipay user id keeps a hint; anything else its first two."""
    masked = mask_email(mask_phone(_ALIPAY_USER_ID.sub(r"2088********\1", account)))
    return masked if masked != account else account[:2] + "***"


def _mask_addresses(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        run = match[0]
        if _STREET.search(run) and _REGION.search(run):
            return mask_address(run)
        return run

    return _ADDRESS_RUN.sub(one, text)


def _mask_database_values(text: str) -> str:
    text = _PG_KEY.sub(r"\1***\2", text)
    text = _PG_ROW.sub(r"\1***\2", text)
    text = _SQL_PARAMETERS.sub("[SQL parameters hidden]", text)
    return _PG_ARGUMENT.sub(r"\1***", text)


def _mask_keyed(match: re.Match[str]) -> str:
    quote, value = next(
        (q, match[v]) for q, v in (("'", "v1"), ('"', "v2"), ("", "v3")) if match[v] is not None
    )
    return f"{match['key']}{match['q']}{match['sep']}{quote}{mask_value(match['key'], value)}{quote}"


def mask_text(text: str) -> str:
    """Free text (a message, an error, a traceback) with buyer data masked by pattern: values quoted by the
    database, phones, emails, Alipay user ids, Chinese addresses, and values under sensitive keys."""
    text = _INPUT_VALUE.sub("input_value='***'", _mask_database_values(text))
    text = _ALIPAY_USER_ID.sub(r"2088********\1", mask_email(mask_phone(text)))
    text = _LABELLED_NAME.sub(lambda m: f"{m['label']}{m['sep']}{mask_name(m['name'])}", text)
    return _KEYED.sub(_mask_keyed, _mask_addresses(text))


def mask_value(key: str, value: Any) -> Any:
    """A structured value masked by its key (phone, address, name, account, payee, buyer, secrets...), or
    by pattern where the key says nothing."""
    lowered = key.lower()
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else str(value)
    if any(word in lowered for word in _SECRET_KEYS):
        return text[:2] + "***"
    sensitive = any(word in lowered for word in ("address", "phone", "mobile", "account"))
    if (
        sensitive or lowered in ("tel", "telephone", "identity") or _NAME_FIELD.fullmatch(key)
    ) and "*" in text:
        return text  # masked already (free text is masked by pattern first, then by key)
    if "address" in lowered:
        return mask_address(text)
    if any(word in lowered for word in ("phone", "mobile")) or lowered in ("tel", "telephone"):
        masked = mask_phone(text)
        return masked if masked != text else text[:3] + "***"
    if "account" in lowered or lowered == "identity":
        return mask_account(text)
    if _NAME_FIELD.fullmatch(key):
        return mask_name(text)
    return mask_text(text) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        context = getattr(record, "log_context", {})
        for field in CONTEXT_FIELDS:
            if (value := getattr(record, field, context.get(field))) is not None:
                line[field] = mask_value(field, value)
        if (data := getattr(record, "data", None)) is not None:
            line["data"] = mask_value("data", data)
        if record.exc_info:
            line["error"] = mask_text(self.formatException(record.exc_info))
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
