from __future__ import annotations

from decimal import Decimal

import pytest

from schema.scalars import parse_decimal, serialize_decimal


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("100.000000000000000000"), "100"),
        (Decimal("0.000000100000000000"), "0.0000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-12.50"), "-12.5"),
        (Decimal("-0.000"), "0"),
        (Decimal("0"), "0"),
    ],
)
def test_decimals_are_written_plainly(value: Decimal, text: str) -> None:
    assert serialize_decimal(value) == text


def test_decimals_are_read_exactly_from_text() -> None:
    assert parse_decimal("0.1") == Decimal("0.1")
    assert parse_decimal(7) == Decimal(7)


@pytest.mark.parametrize("value", [0.1, True, "abc", "NaN", "Infinity", None])
def test_floats_and_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="decimal number"):
        parse_decimal(value)
