"""Indicators against series computed by hand, and the vectorised smoothing against the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.strategy import indicators
from app.strategy.indicators import FloatArray

NAN = math.nan


def series(*values: float) -> FloatArray:
    return np.array(values, dtype=np.float64)


def assert_same(actual: FloatArray, expected: list[float]) -> None:
    np.testing.assert_allclose(actual, series(*expected), rtol=1e-12, equal_nan=True)


def random_walk(length: int, seed: int = 7) -> FloatArray:
    steps = np.random.default_rng(seed).normal(0.0, 0.01, length)
    return 100.0 * np.exp(np.cumsum(steps))


def test_sma_of_one_to_five_over_three() -> None:
    assert_same(indicators.sma(series(1, 2, 3, 4, 5), 3), [NAN, NAN, 2, 3, 4])


def test_sma_of_a_series_shorter_than_its_period_is_undefined() -> None:
    assert_same(indicators.sma(series(1, 2), 3), [NAN, NAN])
    assert_same(indicators.ema(series(1, 2), 3), [NAN, NAN])


def test_ema_is_seeded_with_the_sma_then_smoothed_by_two_over_n_plus_one() -> None:
    # n = 3: alpha = 0.5; seed (2 + 4 + 6) / 3 = 4; then 0.5 * 8 + 0.5 * 4 = 6; 0.5 * 4 + 0.5 * 6.
    assert_same(indicators.ema(series(2, 4, 6, 8, 4), 3), [NAN, NAN, 4, 6, 5])


def test_ema_skips_another_indicator_s_warm_up() -> None:
    # n = 2: alpha = 2/3; seed (1 + 2) / 2 = 1.5 at the second defined value; 2/3 * 3 + 1/3 * 1.5.
    assert_same(indicators.ema(series(NAN, NAN, 1, 2, 3), 2), [NAN, NAN, NAN, 1.5, 2.5])


def _smooth_by_loop(values: FloatArray, period: int, alpha: float) -> FloatArray:
    out = np.full(values.shape, np.nan)
    out[period - 1] = values[:period].mean()
    for i in range(period, len(values)):
        out[i] = alpha * values[i] + (1 - alpha) * out[i - 1]
    return out


@pytest.mark.parametrize("period", [2, 3, 14, 50, 500])
def test_vectorised_smoothing_matches_the_plain_recursion(period: int) -> None:
    # 20,000 values: several blocks even for period 500 (block length ~ 600 / alpha).
    closes = random_walk(20_000)
    for alpha in (2.0 / (period + 1), 1.0 / period):
        np.testing.assert_allclose(
            indicators.smooth(closes, period, alpha),
            _smooth_by_loop(closes, period, alpha),
            rtol=1e-11,
            equal_nan=True,
        )


def test_wilder_rsi_by_hand() -> None:
    # n = 2 on changes +1, -1, +2, 0, -1. Seed: gains (1 + 0) / 2, losses (0 + 1) / 2: RSI 50.
    # Then gain (0.5 + 2) / 2 = 1.25, loss 0.5 / 2 = 0.25: 100 * 1.25 / 1.5 = 250/3.
    # Then 0.625 and 0.125: 250/3 again. Then 0.3125 and (0.125 + 1) / 2 = 0.5625: 250/7.
    rsi = indicators.rsi(series(10, 11, 10, 12, 12, 11), 2)
    assert_same(rsi, [NAN, NAN, 50, 250 / 3, 250 / 3, 250 / 7])


def test_wilder_rsi_on_the_classic_fourteen_period_sample() -> None:
    closes = series(
        44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42,
        45.84, 46.08, 45.89, 46.03, 45.61, 46.28, 46.28, 46.00,
    )  # fmt: skip
    rsi = indicators.rsi(closes, 14)
    assert np.isnan(rsi[:14]).all()
    # The first 14 changes: gains sum to 3.34, losses to 1.40 (summed by hand).
    assert rsi[14] == pytest.approx(100 * 3.34 / (3.34 + 1.40))
    # Then a loss of 0.28: gains 3.34/14 * 13/14, losses (1.40/14 * 13 + 0.28) / 14.
    gain, loss = 3.34 / 14 * 13 / 14, (1.40 / 14 * 13 + 0.28) / 14
    assert rsi[15] == pytest.approx(100 * gain / (gain + loss))


def test_rsi_without_movement_is_fifty_and_without_losses_is_a_hundred() -> None:
    assert_same(indicators.rsi(series(5, 5, 5, 5), 2), [NAN, NAN, 50, 50])
    assert_same(indicators.rsi(series(1, 2, 3, 4), 2), [NAN, NAN, 100, 100])


def test_bollinger_uses_the_population_standard_deviation() -> None:
    bands = indicators.bollinger(series(1, 2, 3, 4, 5), 3, 2.0)
    width = 2 * math.sqrt(2 / 3)  # every window is x-1, x, x+1: variance (1 + 0 + 1) / 3
    assert_same(bands.middle, [NAN, NAN, 2, 3, 4])
    assert_same(bands.upper, [NAN, NAN, 2 + width, 3 + width, 4 + width])
    assert_same(bands.lower, [NAN, NAN, 2 - width, 3 - width, 4 - width])


def test_macd_line_signal_and_histogram() -> None:
    closes = random_walk(200)
    macd = indicators.macd(closes, 3, 6, 4)
    line = indicators.ema(closes, 3) - indicators.ema(closes, 6)
    assert_same(macd.line, list(line))
    # The signal line is an EMA of the line, which is defined from index 5: seeded at 5 + 3.
    assert np.isnan(macd.signal[:8]).all()
    assert macd.signal[8] == pytest.approx(line[5:9].mean())
    assert_same(macd.histogram, list(line - macd.signal))


def test_periods_below_one_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        indicators.sma(series(1, 2), 0)
