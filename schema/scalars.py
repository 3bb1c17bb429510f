from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import strawberry
from graphql import (
    FloatValueNode,
    GraphQLError,
    IntValueNode,
    StringValueNode,
    ValueNode,
    print_ast,
)

from app import money
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


# A decimal as text: digits with an optional point and exponent, nothing else. Decimal() itself
# would also take surrounding spaces, underscores and non-ASCII digits.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Longer than any stored value can be written sensibly (36 digits, a sign, a point, an exponent);
# the bound keeps a megabyte of digits from being parsed, or echoed back in the error.
MAX_DECIMAL_TEXT = 100
_SHOWN = 40
FLOAT_REFUSED = 'send decimals as strings, like "0.01": a float may already have been rounded'


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _refused(shown: str, reason: str, node: ValueNode | None = None) -> GraphQLError:
    # A GraphQLError is what graphql-core expects from a scalar that refuses a value: it becomes
    # a validation error (a literal) or a variable error, never an unexpected exception.
    return GraphQLError(f"Decimal cannot represent {_shown(shown)}: {reason}", node)


def _from_text(text: str, shown: str, node: ValueNode | None = None) -> Decimal:
    if len(text) > MAX_DECIMAL_TEXT or not _DECIMAL_TEXT.fullmatch(text):
        reason = "not a decimal number" if text else "an empty string is not a number"
        raise _refused(shown, reason, node)
    try:
        number = Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal can hold
        raise _refused(shown, "not a finite decimal number", node) from None
    problem = money.unstorable(number)
    if problem is not None:
        raise _refused(shown, problem, node)
    return number


def parse_decimal(value: object) -> Decimal:
    """A Decimal from a variable's JSON value: a string, or an integer."""
    if isinstance(value, str):
        return _from_text(value, json.dumps(value[: _SHOWN + 1]))
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
        problem = money.unstorable(number)
        if problem is not None:
            # Python refuses to print an integer of more than 4,300 digits.
            raise _refused(str(value) if value < 10**_SHOWN else format(number, ".6E"), problem)
        return number
    # JSON numbers with a fraction have already been through a binary float: only text is exact.
    if isinstance(value, float):
        raise _refused(repr(value), FLOAT_REFUSED)
    raise _refused(_json_text(value), "not a number")


def _json_text(value: object) -> str:
    try:
        return json.dumps(value)[: _SHOWN + 1]
    except (TypeError, ValueError, RecursionError):  # not JSON: a caller other than the transport
        return type(value).__name__


def parse_decimal_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Decimal:
    """A Decimal written in the document: a string, or an integer (`quantity: "0.01"`, `2`)."""
    if isinstance(node, StringValueNode):
        return _from_text(node.value, json.dumps(node.value[: _SHOWN + 1]), node)
    if isinstance(node, IntValueNode):
        return _from_text(node.value, node.value, node)
    if isinstance(node, FloatValueNode):
        raise _refused(node.value, FLOAT_REFUSED, node)
    raise _refused(print_ast(node)[: _SHOWN + 1], "not a number", node)


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description="An exact decimal number (money, prices, quantities), written as a string",
    serialize=serialize_decimal,
    parse_value=parse_decimal,
    parse_literal=parse_decimal_literal,
)
