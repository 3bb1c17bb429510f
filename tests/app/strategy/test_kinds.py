"""Parameter declarations and their validation: defaults, types, bounds, cross-parameter rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.errors import InvalidInput
from app.strategy import kinds
from app.strategy.kinds import Kind, ParameterType


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_declares_valid_defaults_and_the_common_fraction(kind: Kind) -> None:
    specs = kinds.parameter_specs(kind)
    assert specs[-1].name == "fraction"
    for spec in specs:
        assert spec.minimum <= spec.default <= spec.maximum
        expected = int if spec.type is ParameterType.INT else Decimal
        assert type(spec.default) is expected
    defaults = kinds.validate(kind, {})
    assert defaults == {spec.name: spec.default for spec in specs}


def test_missing_and_null_take_defaults_and_values_are_normalised() -> None:
    values = kinds.validate(
        Kind.RSI_MEAN_REVERSION, {"period": "21", "oversold": 25.5, "overbought": None}
    )
    assert values == {
        "period": 21,
        "oversold": Decimal("25.5"),
        "overbought": Decimal("70"),
        "fraction": Decimal("1"),
    }
    assert type(values["period"]) is int
    # A JavaScript client's 10.0 is the integer 10; a float decimal keeps the digits it shows.
    assert kinds.validate(Kind.SMA_CROSSOVER, {"fast": 10.0, "fraction": 0.1})["fraction"] == (
        Decimal("0.1")
    )


def _field_of(kind: Kind, raw: Any) -> str | None:
    with pytest.raises(InvalidInput) as caught:
        kinds.validate(kind, raw)
    return caught.value.field


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"fast": 1}, "parameters.fast"),  # below the minimum
        ({"slow": 501}, "parameters.slow"),  # above the maximum
        ({"fast": 2.5}, "parameters.fast"),  # not an integer
        ({"fast": True}, "parameters.fast"),  # booleans are not numbers here
        ({"fast": "ten"}, "parameters.fast"),
        ({"fast": "--5"}, "parameters.fast"),
        ({"fast": "9" * 5000}, "parameters.fast"),  # too long for int(), refused all the same
        ({"fraction": "0"}, "parameters.fraction"),
        ({"fraction": "1.5"}, "parameters.fraction"),
        ({"fraction": "NaN"}, "parameters.fraction"),
        ({"fraction": "Infinity"}, "parameters.fraction"),
        ({"fraction": "abc"}, "parameters.fraction"),
        ({"fraction": [1]}, "parameters.fraction"),
        ({"fraction": "0.123456789"}, "parameters.fraction"),  # more than 8 places
        ({"fast": 30, "slow": 10}, "parameters.fast"),  # fast must be the faster one
        ({"fast": 20, "slow": 20}, "parameters.fast"),
        ({"speed": 3}, "parameters.speed"),  # unknown
        ([1, 2], "parameters"),
        ("fast=3", "parameters"),
    ],
)
def test_refusals_name_the_parameter(raw: Any, field: str) -> None:
    assert _field_of(Kind.SMA_CROSSOVER, raw) == field


def test_cross_parameter_rules_of_the_other_kinds() -> None:
    assert _field_of(Kind.RSI_MEAN_REVERSION, {"oversold": 70, "overbought": 60}) == (
        "parameters.oversold"
    )
    assert _field_of(Kind.MACD, {"fast": 26, "slow": 12}) == "parameters.fast"
    # The defaults of the other side count: slow defaults to 26 for MACD.
    assert _field_of(Kind.MACD, {"fast": 30}) == "parameters.fast"


def test_unknown_kind_names_the_kind_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        kinds.parse_kind("MOON_PHASE")
    assert caught.value.field == "kind"


def test_encode_writes_decimals_as_strings_and_decode_restores_them() -> None:
    values = kinds.validate(Kind.BOLLINGER_BREAKOUT, {"width": "2.50"})
    stored = kinds.encode(values)
    assert stored == {"period": 20, "width": "2.50", "fraction": "1"}
    assert kinds.decode(Kind.BOLLINGER_BREAKOUT, stored) == values
    # A row written before a parameter existed reads that parameter as its default.
    assert kinds.decode(Kind.BOLLINGER_BREAKOUT, {"period": 10})["fraction"] == Decimal(1)
