"""Signals: events exactly at the cross, silence through the warm-up, one code for live and test."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from app.strategy import indicators, kinds, signals
from app.strategy.kinds import Kind, Parameters
from app.strategy.signals import DOWN, FLAT, HOLD, LONG, UP, Signals
from tests.app.strategy.test_indicators import random_walk, series

# Small periods, so short random walks produce plenty of signals for every kind.
SMALL: dict[Kind, dict[str, int | str]] = {
    Kind.SMA_CROSSOVER: {"fast": 2, "slow": 4},
    Kind.EMA_CROSSOVER: {"fast": 2, "slow": 5},
    Kind.RSI_MEAN_REVERSION: {"period": 3, "oversold": "35", "overbought": "65"},
    Kind.BOLLINGER_BREAKOUT: {"period": 4, "width": "0.5"},
    Kind.MACD: {"fast": 2, "slow": 4, "signal": 3},
}


def small(kind: Kind) -> Parameters:
    return kinds.validate(kind, SMALL[kind])


def as_list(values: Signals) -> list[int]:
    return [int(v) for v in values]


def test_crossings_fire_on_the_candle_that_goes_through() -> None:
    assert as_list(signals.crossings(series(1, 1, 3, 3, 0), 2.0, 0.0)) == [0, 0, UP, 0, DOWN]
    # A touch keeps the side it came from: touch and back is nothing; touch and through is one.
    assert as_list(signals.crossings(series(1, 2, 1), 2.0, 0.0)) == [0, 0, 0]
    assert as_list(signals.crossings(series(1, 2, 2, 3), 2.0, 0.0)) == [0, 0, 0, UP]
    # From touching since the start, leaving the line is a cross.
    assert as_list(signals.crossings(series(2, 2, 3), 2.0, 0.0)) == [0, 0, UP]
    # Undefined values (a warm-up) cross nothing, not even on the first defined candle.
    assert as_list(signals.crossings(series(np.nan, 3, 1), 2.0, 0.0)) == [0, 0, DOWN]
    # Gaps within the noise are touches.
    assert as_list(signals.crossings(series(1, 2 + 1e-12, 1), 2.0, 1e-9)) == [0, 0, 0]


def test_sma_crossover_by_hand() -> None:
    # fast = SMA2: -, 11.5, 10.5, 9.5, 10.5, 10, 7; slow = SMA3: -, -, 11, 10, 10.33, 9.67, 8.67.
    # fast - slow: -0.5, -0.5, +0.17 (crosses above), +0.33, -1.67 (crosses below).
    parameters = kinds.validate(Kind.SMA_CROSSOVER, {"fast": 2, "slow": 3})
    got = signals.signals(Kind.SMA_CROSSOVER, parameters, [12, 11, 10, 9, 12, 8, 6])
    assert as_list(got) == [HOLD, HOLD, HOLD, HOLD, LONG, HOLD, FLAT]


def test_rsi_mean_reversion_by_hand() -> None:
    # RSI(2) of these closes is -, -, 50, 83.3, 83.3, 35.7 (see the indicator tests): it rises
    # above 60 on candle 3 (sell) and falls below 40 on candle 5 (buy).
    parameters = kinds.validate(
        Kind.RSI_MEAN_REVERSION, {"period": 2, "oversold": 40, "overbought": 60}
    )
    got = signals.signals(Kind.RSI_MEAN_REVERSION, parameters, [10, 11, 10, 12, 12, 11])
    assert as_list(got) == [HOLD, HOLD, HOLD, FLAT, HOLD, LONG]


def test_bollinger_breakout_by_hand() -> None:
    # period 3, width 1: a flat market has zero-width bands at 10; 12 breaks out (upper 11.61);
    # 10 is back below the middle band (11.33).
    parameters = kinds.validate(Kind.BOLLINGER_BREAKOUT, {"period": 3, "width": 1})
    got = signals.signals(Kind.BOLLINGER_BREAKOUT, parameters, [10, 10, 10, 12, 12, 10])
    assert as_list(got) == [HOLD, HOLD, HOLD, LONG, HOLD, FLAT]


@pytest.mark.parametrize("kind", [Kind.SMA_CROSSOVER, Kind.EMA_CROSSOVER, Kind.MACD])
def test_crossover_kinds_signal_exactly_where_the_lines_change_sides(kind: Kind) -> None:
    closes = random_walk(3_000, seed=11)
    p = small(kind)
    if kind is Kind.MACD:
        macd = indicators.macd(closes, int(p["fast"]), int(p["slow"]), int(p["signal"]))
        fast, slow = macd.line, macd.signal
    else:
        average = indicators.sma if kind is Kind.SMA_CROSSOVER else indicators.ema
        fast, slow = average(closes, int(p["fast"])), average(closes, int(p["slow"]))
    side = np.sign(fast - slow)  # a random walk never touches, so no noise to care for
    expected = np.zeros(len(closes), dtype=np.int8)
    changed = (side[1:] != side[:-1]) & ~np.isnan(side[:-1])
    expected[1:][changed] = side[1:][changed]
    got = signals.signals(kind, p, closes)
    assert np.count_nonzero(got) > 100
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kind", list(Kind))
def test_the_warm_up_is_silent_and_exactly_as_long_as_declared(kind: Kind) -> None:
    p = small(kind)
    warmup = signals.warmup(kind, p)
    first_signals = []
    for seed in range(200):
        got = signals.signals(kind, p, random_walk(warmup + 30, seed=seed))
        assert not got[:warmup].any()
        first_signals.append(int(np.flatnonzero(got)[0]) if got.any() else len(got))
    assert min(first_signals) == warmup  # the declared warm-up is not longer than needed


@pytest.mark.parametrize("kind", list(Kind))
def test_a_flat_market_gives_no_signal(kind: Kind) -> None:
    # Averages of equal prices differ in their last bits; that noise must not trade.
    flat = np.full(300, 0.1 + 0.2)
    assert not signals.signals(kind, kinds.validate(kind, {}), flat).any()


@pytest.mark.parametrize("kind", list(Kind))
def test_latest_signal_over_a_live_window_agrees_with_the_whole_history(kind: Kind) -> None:
    p = kinds.validate(kind, {})
    closes = random_walk(1_500, seed=3)
    full = signals.signals(kind, p, closes)
    window = signals.history_size(kind, p)
    assert window > signals.warmup(kind, p)
    ends = range(window, len(closes) + 1)
    live = [signals.latest_signal(kind, p, closes[end - window : end]) for end in ends]
    assert live == as_list(full[window - 1 :])
    assert any(live)


def test_latest_signal_is_hold_without_enough_history_and_takes_decimals() -> None:
    p = kinds.validate(Kind.SMA_CROSSOVER, {"fast": 2, "slow": 3})
    assert signals.latest_signal(Kind.SMA_CROSSOVER, p, []) == HOLD
    assert signals.latest_signal(Kind.SMA_CROSSOVER, p, [Decimal(5), Decimal(4)]) == HOLD
    prices = [Decimal(p) for p in ("12", "11", "10", "9", "12")]
    assert signals.latest_signal(Kind.SMA_CROSSOVER, p, prices) == LONG


def test_closes_must_be_finite() -> None:
    p = kinds.validate(Kind.SMA_CROSSOVER, {})
    with pytest.raises(ValueError, match="finite"):
        signals.signals(Kind.SMA_CROSSOVER, p, [1.0, float("nan")])


def test_positions_follow_the_last_signal_and_start_flat() -> None:
    got = signals.positions(np.array([FLAT, HOLD, LONG, HOLD, LONG, FLAT, HOLD, LONG], np.int8))
    assert as_list(got) == [0, 0, 1, 1, 1, 0, 0, 1]
