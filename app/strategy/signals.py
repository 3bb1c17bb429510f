"""Each strategy kind's one implementation: closes in, a signal per close out.

Signal semantics. `signals(kind, parameters, closes)[i]` is decided at the close of candle `i`
and is one of:

* `LONG` (+1): be long from here on. A flat bot buys; a bot already long holds.
* `FLAT` (-1): be flat from here on. A long bot sells; a flat bot stays flat. The paper
  exchange is long-or-flat, so -1 never means "go short".
* `HOLD` (0): no new instruction; keep whatever position there is.

Signals are events, not states: they fire on the candle where a rule's condition starts to hold
(a cross), not on every candle while it holds. A bot started in the middle of a trend therefore
waits for the next cross, and a position closed by hand or by a risk rule is not re-entered until
a fresh entry. The warm-up (`warmup(kind, parameters)` leading candles, while the indicators are
undefined) is all HOLD. `positions()` turns signals into the position a bot should have, which
is what a backtest trades.

Parameters arrive as the validated ints and Decimals of `kinds.validate`; they become floats
here, at the edge of the float world, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from app.strategy import indicators
from app.strategy.indicators import FloatArray
from app.strategy.kinds import Kind, ParameterType, Value, parameter_specs

Signals = npt.NDArray[np.int8]
LONG, HOLD, FLAT = 1, 0, -1
UP, DOWN = 1, -1  # the directions of a crossing
# Gaps smaller than this share of the compared scale are float noise, not crosses: two averages
# of a flat market, computed over different windows, differ in their last bits.
NOISE = 1e-9
# A live bot passes this many periods of history beyond the warm-up: EMA and RSI remember their
# seed, whose weight decays like (1 - 1/period)**k; after 10 periods it is below 1e-4 of it, so
# the latest signal agrees with a backtest over the whole history.
CONVERGENCE_PERIODS = 10


def _forward_fill(values: Signals) -> Signals:
    """Each zero takes the last non-zero value before it (zero when there is none)."""
    last = np.maximum.accumulate(np.where(values != 0, np.arange(len(values)), 0))
    return values[last]


def crossings(a: FloatArray, b: FloatArray | float, noise: FloatArray | float) -> Signals:
    """UP where `a` crosses above `b`, DOWN where it crosses below, 0 elsewhere.

    `a` crosses above `b` on a candle where it is above and on the candle before was not: below,
    or touching (a gap within `noise`). A touch keeps the side it came from, so touching and
    going back is no cross, and touching and going through is one cross, on the candle that
    goes through. Nothing crosses on the first candle where both series are defined.
    """
    gap = a - b
    defined = ~np.isnan(gap)
    side = np.sign(np.where(defined & (np.abs(gap) > noise), gap, 0.0)).astype(np.int8)
    side = _forward_fill(side)
    out = np.zeros(len(a), dtype=np.int8)
    changed = (side[1:] != side[:-1]) & (side[1:] != 0) & defined[:-1]
    out[1:] = np.where(changed, side[1:], 0)
    return out


_Rule = Callable[[FloatArray, Mapping[str, Value]], Signals]


def _events(enter: npt.NDArray[np.bool_], leave: npt.NDArray[np.bool_]) -> Signals:
    return np.where(enter, LONG, np.where(leave, FLAT, HOLD)).astype(np.int8)


def _moving_crossover(average: Callable[[FloatArray, int], FloatArray]) -> _Rule:
    def rule(closes: FloatArray, p: Mapping[str, Value]) -> Signals:
        fast, slow = average(closes, int(p["fast"])), average(closes, int(p["slow"]))
        return crossings(fast, slow, NOISE * closes)

    return rule


def _rsi_mean_reversion(closes: FloatArray, p: Mapping[str, Value]) -> Signals:
    rsi = indicators.rsi(closes, int(p["period"]))
    noise = NOISE * 100  # the RSI's own scale
    falls_below = crossings(rsi, float(p["oversold"]), noise) == DOWN
    rises_above = crossings(rsi, float(p["overbought"]), noise) == UP
    return _events(falls_below, rises_above)


def _bollinger_breakout(closes: FloatArray, p: Mapping[str, Value]) -> Signals:
    bands = indicators.bollinger(closes, int(p["period"]), float(p["width"]))
    # Exiting at the middle band takes the breakout's gain back to the mean, not all the way to
    # the opposite band. The two events cannot coincide: above the upper band is above the middle.
    breaks_out = crossings(closes, bands.upper, NOISE * closes) == UP
    falls_back = crossings(closes, bands.middle, NOISE * closes) == DOWN
    return _events(breaks_out, falls_back)


def _macd(closes: FloatArray, p: Mapping[str, Value]) -> Signals:
    macd = indicators.macd(closes, int(p["fast"]), int(p["slow"]), int(p["signal"]))
    return crossings(macd.line, macd.signal, NOISE * closes)


_RULES: dict[Kind, _Rule] = {
    Kind.SMA_CROSSOVER: _moving_crossover(indicators.sma),
    Kind.EMA_CROSSOVER: _moving_crossover(indicators.ema),
    Kind.RSI_MEAN_REVERSION: _rsi_mean_reversion,
    Kind.BOLLINGER_BREAKOUT: _bollinger_breakout,
    Kind.MACD: _macd,
}


def warmup(kind: Kind, parameters: Mapping[str, Value]) -> int:
    """How many leading candles are HOLD whatever the prices.

    A cross needs both compared series defined on the candle before it, too: one candle more
    than the slowest indicator's own warm-up.
    """
    p = {name: int(value) for name, value in parameters.items()}
    if kind is Kind.RSI_MEAN_REVERSION:
        return p["period"] + 1  # the RSI needs `period` changes, so period + 1 closes
    if kind is Kind.BOLLINGER_BREAKOUT:
        return p["period"]
    if kind is Kind.MACD:
        return p["slow"] + p["signal"] - 1  # the signal line is an EMA of the slow EMA's output
    return p["slow"]


def history_size(kind: Kind, parameters: Mapping[str, Value]) -> int:
    """How many of the latest closes a live bot passes to `latest_signal`."""
    longest = max(
        int(parameters[spec.name])
        for spec in parameter_specs(kind)
        if spec.type is ParameterType.INT
    )
    return warmup(kind, parameters) + 1 + CONVERGENCE_PERIODS * longest


def as_closes(closes: Sequence[float | Decimal] | FloatArray) -> FloatArray:
    """The float64 array the rules work on (Decimal prices convert here, at the edge)."""
    array = np.asarray(closes, dtype=np.float64)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ValueError("closes must be a one-dimensional series of finite prices")
    return array


def signals(
    kind: Kind, parameters: Mapping[str, Value], closes: Sequence[float | Decimal] | FloatArray
) -> Signals:
    return _RULES[kind](as_closes(closes), parameters)


def latest_signal(
    kind: Kind, parameters: Mapping[str, Value], closes: Sequence[float | Decimal] | FloatArray
) -> int:
    """The signal at the last close, by the same code a backtest runs; HOLD when there is none.

    Pass the last `history_size(kind, parameters)` closes, oldest first.
    """
    series = signals(kind, parameters, closes)
    return int(series[-1]) if len(series) else HOLD


def positions(series: Signals) -> Signals:
    """The position each signal leaves a bot in: 1 long, 0 flat (flat until the first LONG)."""
    return np.equal(_forward_fill(series), LONG).astype(np.int8)
