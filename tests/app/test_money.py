"""The process's decimal context holds every result money arithmetic makes of stored values."""

from __future__ import annotations

import decimal
import threading
from decimal import Decimal, DivisionImpossible

import pytest

from app import money

LARGEST = Decimal("999999999999999999.999999999999999999")  # NUMERIC(36, 18) at its fullest
SMALLEST_STEP = Decimal("1e-18")


def test_a_remainder_by_the_smallest_step_and_a_product_of_two_stored_values_are_exact() -> None:
    # tests/conftest.py widens the context as the server and the workers do at start-up.
    assert LARGEST % SMALLEST_STEP == 0
    product = LARGEST * LARGEST
    assert product == Decimal(str(LARGEST)) ** 2
    assert product.adjusted() == 35
    assert len(product.as_tuple().digits) == 72


def test_python_s_default_context_would_raise_or_round() -> None:
    with decimal.localcontext(decimal.Context(prec=28)) as narrow:
        with pytest.raises(decimal.InvalidOperation) as raised:
            _ = LARGEST % SMALLEST_STEP
        assert DivisionImpossible in raised.value.args[0]
        narrow.traps[decimal.Inexact] = True
        with pytest.raises(decimal.Inexact):
            _ = LARGEST * LARGEST


def test_threads_started_later_get_the_wide_context_and_the_traps_stay() -> None:
    money.widen_decimal_context()
    seen: list[decimal.Context] = []
    thread = threading.Thread(target=lambda: seen.append(decimal.getcontext()))
    thread.start()
    thread.join()
    assert seen[0].prec == money.PRECISION
    assert decimal.getcontext().traps[decimal.InvalidOperation]
    with pytest.raises(decimal.InvalidOperation):
        _ = Decimal("NaN") + Decimal("sNaN")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (LARGEST, None),
        (-LARGEST, None),
        (SMALLEST_STEP, None),
        (Decimal("1E+18"), "must be less than 1e18 in size"),
        (Decimal("1E-19"), "has more than 18 decimal places"),
        (Decimal("NaN"), "must be a finite number"),
        (Decimal("-Infinity"), "must be a finite number"),
    ],
)
def test_what_a_money_column_stores(value: Decimal, problem: str | None) -> None:
    assert money.unstorable(value) == problem
