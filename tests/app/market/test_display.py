"""The display rules: what a trader reads of a stored value, one rule per kind of number."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.market import display


@pytest.mark.parametrize(
    ("value", "tick", "shown"),
    [
        (D("59535.578181818181818182"), D("0.01"), "59535.58"),
        (D("100.000000000000000000"), D("0.01"), "100"),
        (D("12345.675"), D("0.01"), "12345.68"),  # half to even: 7 is odd, so up
        (D("12345.665"), D("0.01"), "12345.66"),  # half to even: 6 stays
        (D("1.2345"), D("0.25"), "1.23"),  # a tick's places, not its grid
        (D("12345.67"), D("10"), "12346"),  # a tick of 10 still shows whole units
        (D("0.00012345678"), D("0.00000001"), "0.00012346"),
    ],
)
def test_a_price_shows_at_most_its_ticks_places(value: D, tick: D, shown: str) -> None:
    assert display.text(display.price(value, tick)) == shown


@pytest.mark.parametrize(
    ("value", "step", "shown"),
    [
        (D("0.123456789"), D("0.001"), "0.123"),
        (D("2.000000000000000000"), D("0.00001"), "2"),
        (D("0.0000000004"), D("0.001"), "0"),
        (D("-0.0004"), D("0.001"), "0"),  # never "-0"
        (D("1500"), D("1"), "1500"),
    ],
)
def test_a_quantity_shows_at_most_its_steps_places(value: D, step: D, shown: str) -> None:
    assert display.text(display.quantity(value, step)) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (D("0.720299999999999999998"), "0.7203"),
        (D("-0.303170000000000000"), "-0.30317"),
        (D("999999999999999999.123456785"), "999999999999999999.12345678"),
        (D("0.000000005"), "0"),  # half to even
        (D("0.000000015"), "0.00000002"),
        (D("1E+2"), "100"),
    ],
)
def test_money_and_averages_show_8_places(value: D, shown: str) -> None:
    assert display.text(display.money(value)) == shown
    assert display.text(display.average(value)) == shown
    assert display.text(display.volume(value)) == shown


def test_shown_values_carry_no_trailing_zeros_nor_a_positive_exponent() -> None:
    assert display.money(D("1500.000000000000000000")).as_tuple() == D("1500").as_tuple()
    assert display.price(D("100.10"), D("0.01")).as_tuple() == D("100.1").as_tuple()


def test_missing_values_stay_missing() -> None:
    assert display.price(None, D("0.01")) is None
    assert display.quantity(None, D("0.01")) is None
    assert display.average(None) is None
    assert display.money(None) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("10.000000000000000000"), "10"),
        (D("1E-7"), "0.0000001"),
        (D("1E+3"), "1000"),
        (D("-0.0"), "0"),
        (D("0.5000"), "0.5"),
    ],
)
def test_text_is_plain_without_trailing_zeros(value: D, text: str) -> None:
    assert display.text(value) == text


def test_text_of_a_shown_value_reads_as_a_trader_expects() -> None:
    assert display.text(display.money(D("10.000000000000000000"))) == "10"
