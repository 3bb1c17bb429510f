from __future__ import annotations

from decimal import Decimal, InvalidOperation

import strawberry

from app.errors import NotFound


def parse_id(value: strawberry.ID) -> int:
    """Our ids are integers; anything else names no object, so it is simply not found."""
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"no object with id {text!r}")
    return int(text)


def serialize_decimal(value: Decimal) -> str:
    """Plain notation, no exponent and no trailing zeros: `0.0000001`, `100`, `99.5`.

    PostgreSQL's NUMERIC(36, 18) pads every value to 18 places and Python would print small
    values as `1E-7`; clients get the same text whichever database is behind the API.
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def parse_decimal(value: object) -> Decimal:
    # JSON numbers may already have been rounded through a binary float: only text is exact.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError('a decimal number is written as a string, like "12.5"')
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError("a decimal number must be finite")
    return number


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description="An exact decimal number (money, prices, quantities), written as a string",
    serialize=serialize_decimal,
    parse_value=parse_decimal,
)
