"""Money is Decimal with two places end to end, written as a string on the wire ("129.00").

`Money` is an amount a service accepts (a request body, an approval on the bus): at most MAX_AMOUNT either
way. `MoneyOut` is one it reports, such as a sum of several amounts, which may be larger. `MoneyType` is the
column type that keeps both exact in PostgreSQL and in SQLite."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from sqlalchemy import Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

CENT = Decimal("0.01")
# The largest amount accepted anywhere (an order line, a fee, a refund, a cashback): far above any apparel
# order, and low enough that the sums the services store (a case's lines, at most 200 of them) still fit
# the NUMERIC(12, 2) columns, whose own limit is 9,999,999,999.99.
MAX_AMOUNT = Decimal("1000000.00")
# What a reported sum may reach (far beyond any real one): it keeps quantize() within Decimal's precision.
MAX_SUM = Decimal("1" + "0" * 20)
_DECIMAL = re.compile(r"^-?\d{1,12}(\.\d+)?$")
_MESSAGE = 'money must be a decimal string such as "129.00"'


def parse_money(value: Any) -> Decimal:
    """Parse an amount of any size; refuse floats (binary fractions) and sub-cent precision."""
    if isinstance(value, bool | float) or (isinstance(value, str) and not _DECIMAL.match(value)):
        raise ValueError(_MESSAGE)
    if not isinstance(value, int | str | Decimal):
        raise ValueError(_MESSAGE)
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):  # ValueError: an integer of more than 4,300 digits
        raise ValueError(_MESSAGE) from None
    if not amount.is_finite():
        raise ValueError("money must be a finite amount")
    if abs(amount) > MAX_SUM:
        raise ValueError(f"money is at most {MAX_SUM}")
    if amount != amount.quantize(CENT):
        raise ValueError("money has at most two decimal places")
    return amount.quantize(CENT)


def to_money(value: Any) -> Decimal:
    """Parse an amount a service accepts: at most MAX_AMOUNT either way."""
    amount = parse_money(value)
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"money is at most {MAX_AMOUNT}")
    return amount


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt(value: Decimal) -> str:
    return f"{cents(value):.2f}"


_SCHEMA = {"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$", "examples": ["129.00"]}

Money = Annotated[
    Decimal,
    BeforeValidator(to_money),
    PlainSerializer(fmt, return_type=str, when_used="json"),
    WithJsonSchema({**_SCHEMA, "description": f"at most two decimal places, at most {MAX_AMOUNT}"}),
]
MoneyOut = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(fmt, return_type=str, when_used="json"),
    WithJsonSchema(_SCHEMA),
]


class _SQLiteCents(Numeric[Decimal]):
    """Declared NUMERIC(12, 2), as the migrations made it, but holding integer cents passed through as they
    are: SQLite's NUMERIC affinity stores an integer unchanged, where SQLAlchemy's Numeric goes via float."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class MoneyType(TypeDecorator[Decimal]):
    """A money column: NUMERIC(12, 2) in PostgreSQL; integer cents in SQLite, whose NUMERIC goes through a
    float (12345678901234567 read back as ...568.00) and whose SUM would too."""

    impl = Numeric(12, 2, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteCents(12, 2))
        return dialect.type_descriptor(Numeric(12, 2, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = cents(value if isinstance(value, Decimal) else Decimal(str(value)))
        return int(amount.scaleb(2)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-2).quantize(CENT)
        return cents(Decimal(value))
