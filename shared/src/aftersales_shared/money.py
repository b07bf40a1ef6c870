"""Money is Decimal with two places end to end, written as a string on the wire ("129.00")."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
_DECIMAL = re.compile(r"^-?\d{1,12}(\.\d+)?$")


def to_money(value: Any) -> Decimal:
    """Parse a money amount; refuse floats (binary fractions) and sub-cent precision."""
    if isinstance(value, bool | float) or (isinstance(value, str) and not _DECIMAL.match(value)):
        raise ValueError('money must be a decimal string such as "129.00"')
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError('money must be a decimal string such as "129.00"') from None
    if not amount.is_finite():
        raise ValueError("money must be a finite amount")
    if amount != amount.quantize(CENT):
        raise ValueError("money has at most two decimal places")
    return amount.quantize(CENT)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt(value: Decimal) -> str:
    return f"{cents(value):.2f}"


Money = Annotated[
    Decimal,
    BeforeValidator(to_money),
    PlainSerializer(fmt, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$", "examples": ["129.00"]}),
]
