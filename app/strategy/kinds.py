"""The built-in strategy kinds: what each one is and the parameters it takes.

Values are normalised to `int` (periods) and `Decimal` (thresholds, widths, fractions). The
signal code converts them to floats at its edge; everything stored or shown stays exact.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.errors import InvalidInput

Value = int | Decimal
Parameters = dict[str, Value]
# More digits than any threshold or fraction needs; it also keeps stored strings short.
MAX_DECIMAL_PLACES = 8
# Digits bounded: Python refuses to convert text of more than 4,300 digits with a ValueError.
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class Kind(enum.StrEnum):
    SMA_CROSSOVER = "SMA_CROSSOVER"
    EMA_CROSSOVER = "EMA_CROSSOVER"
    RSI_MEAN_REVERSION = "RSI_MEAN_REVERSION"
    BOLLINGER_BREAKOUT = "BOLLINGER_BREAKOUT"
    MACD = "MACD"


class ParameterType(enum.StrEnum):
    INT = "INT"
    DECIMAL = "DECIMAL"


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One parameter; `minimum` and `maximum` are inclusive."""

    name: str
    type: ParameterType
    default: Value
    minimum: Value
    maximum: Value
    description: str


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: Kind
    description: str
    parameters: tuple[ParameterSpec, ...]  # its own; parameter_specs() adds the common ones
    # Pairs (smaller, larger) that must be strictly ordered: a fast average slower than the
    # slow one, or an oversold level above the overbought one, would make the rule meaningless.
    ordered: tuple[tuple[str, str], ...] = ()


def _period(name: str, default: int, description: str) -> ParameterSpec:
    # A period of 1 is the price itself; 500 bounds the history a live bot must load.
    return ParameterSpec(name, ParameterType.INT, default, 2, 500, description)


def _decimal(name: str, default: str, low: str, high: str, description: str) -> ParameterSpec:
    return ParameterSpec(
        name, ParameterType.DECIMAL, Decimal(default), Decimal(low), Decimal(high), description
    )


# Sizing belongs to the strategy, not to the bot or the backtest: one definition then decides
# both when and how much, so a backtest of a strategy and a bot running it trade alike.
FRACTION = _decimal(
    "fraction", "1", "0.01", "1", "Share of the bot's allocated capital committed on each entry."
)

KINDS: dict[Kind, KindSpec] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            Kind.SMA_CROSSOVER,
            "Long when the fast simple moving average crosses above the slow one; flat when it "
            "crosses below.",
            (_period("fast", 10, "Fast SMA period."), _period("slow", 30, "Slow SMA period.")),
            (("fast", "slow"),),
        ),
        KindSpec(
            Kind.EMA_CROSSOVER,
            "Long when the fast exponential moving average crosses above the slow one; flat "
            "when it crosses below.",
            (_period("fast", 12, "Fast EMA period."), _period("slow", 26, "Slow EMA period.")),
            (("fast", "slow"),),
        ),
        KindSpec(
            Kind.RSI_MEAN_REVERSION,
            "Long when the RSI (Wilder) falls below the oversold level; flat when it rises "
            "above the overbought level.",
            (
                _period("period", 14, "RSI period."),
                _decimal("oversold", "30", "1", "99", "RSI level below which to buy."),
                _decimal("overbought", "70", "1", "99", "RSI level above which to sell."),
            ),
            (("oversold", "overbought"),),
        ),
        KindSpec(
            Kind.BOLLINGER_BREAKOUT,
            "Long when the close breaks above the upper Bollinger band; flat when it falls back "
            "below the middle band.",
            (
                _period("period", 20, "Moving average and standard deviation period."),
                _decimal("width", "2", "0.1", "10", "Band width in standard deviations."),
            ),
        ),
        KindSpec(
            Kind.MACD,
            "Long when the MACD line crosses above its signal line; flat when it crosses below.",
            (
                _period("fast", 12, "Fast EMA period."),
                _period("slow", 26, "Slow EMA period."),
                _period("signal", 9, "EMA period of the signal line."),
            ),
            (("fast", "slow"),),
        ),
    )
}


def parameter_specs(kind: Kind) -> tuple[ParameterSpec, ...]:
    """Every parameter `kind` takes: its own, then the common ones."""
    return (*KINDS[kind].parameters, FRACTION)


def parse_kind(value: str) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise InvalidInput(f"unknown strategy kind {value!r}", field="kind") from None


def _to_int(spec: ParameterSpec, raw: Any) -> int:
    # JSON has one number type: 20.0 from a JavaScript client is the integer 20. Booleans are
    # ints to Python and are refused on purpose.
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    raise InvalidInput(f"{spec.name} must be an integer", field=f"parameters.{spec.name}")


def _to_decimal(spec: ParameterSpec, raw: Any) -> Decimal:
    field = f"parameters.{spec.name}"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidInput(f"{spec.name} must be a decimal number", field=field)
    try:
        # repr() of a float is the shortest text that reads back as it, so 0.1 stays "0.1".
        value = Decimal(repr(raw) if isinstance(raw, float) else str(raw).strip())
    except InvalidOperation:
        raise InvalidInput(f"{spec.name} must be a decimal number", field=field) from None
    if not value.is_finite():
        raise InvalidInput(f"{spec.name} must be a finite number", field=field)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise InvalidInput(
            f"{spec.name} takes at most {MAX_DECIMAL_PLACES} decimal places", field=field
        )
    return value


def _normalise(spec: ParameterSpec, raw: Any) -> Value:
    value = _to_int(spec, raw) if spec.type is ParameterType.INT else _to_decimal(spec, raw)
    if not spec.minimum <= value <= spec.maximum:
        raise InvalidInput(
            f"{spec.name} must be between {spec.minimum} and {spec.maximum}",
            field=f"parameters.{spec.name}",
        )
    return value


def as_object(raw: object) -> Mapping[str, Any]:
    """A client's parameters JSON as an object (none given is an empty one)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("parameters must be an object of name to value", field="parameters")
    return raw


def validate(kind: Kind, raw: object) -> Parameters:
    """The full parameter set of `kind` from a client's raw values.

    A missing or null parameter takes its default; an unknown one is refused.
    """
    raw = as_object(raw)
    specs = {spec.name: spec for spec in parameter_specs(kind)}
    for name in raw:
        if name not in specs:
            raise InvalidInput(
                f"{kind} has no parameter {name!r}; it takes {', '.join(specs)}",
                field=f"parameters.{name}",
            )
    values = {
        name: spec.default if raw.get(name) is None else _normalise(spec, raw[name])
        for name, spec in specs.items()
    }
    for smaller, larger in KINDS[kind].ordered:
        if not values[smaller] < values[larger]:
            raise InvalidInput(
                f"{smaller} must be less than {larger}", field=f"parameters.{smaller}"
            )
    return values


def encode(values: Mapping[str, Value]) -> dict[str, Any]:
    """The JSON form: decimals as strings, so no value passes through a float."""
    return {
        name: format(value, "f") if isinstance(value, Decimal) else value
        for name, value in values.items()
    }


def decode(kind: Kind, stored: Mapping[str, Any]) -> Parameters:
    """Stored JSON back to ints and Decimals, by the kind's declaration.

    A parameter added to a kind after a row was written reads as its default, so declaring a
    new parameter needs no data migration.
    """
    values: Parameters = {}
    for spec in parameter_specs(kind):
        raw = stored.get(spec.name)
        if raw is None:
            values[spec.name] = spec.default
        elif spec.type is ParameterType.INT:
            values[spec.name] = int(raw)
        else:
            values[spec.name] = Decimal(str(raw))
    return values
