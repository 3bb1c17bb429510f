"""Technical indicators over float64 closes, vectorised with NumPy.

Every function returns arrays as long as its input, with NaN where the indicator is not yet
defined (the warm-up), so index `i` always means "as of the close of candle `i`".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
# The smoothing below works with decay**-k; keeping k * log(1/decay) under this bound keeps those
# factors far from float64 overflow (about e**709) even when multiplied by large prices.
_LOG_BUDGET = 600.0


class Bands(NamedTuple):
    lower: FloatArray
    middle: FloatArray
    upper: FloatArray


class Macd(NamedTuple):
    line: FloatArray
    signal: FloatArray
    histogram: FloatArray


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"an indicator period must be at least 1, not {period}")


def _windowed(values: FloatArray, period: int) -> tuple[FloatArray, FloatArray]:
    """An all-NaN output and the trailing windows that fill it from index `period - 1`."""
    _check_period(period)
    out = np.full(values.shape, np.nan)
    if len(values) < period:
        return out, np.empty((0, period))
    return out, sliding_window_view(values, period)


def sma(values: FloatArray, period: int) -> FloatArray:
    # Each window is averaged on its own rather than by a running sum: a running sum drifts
    # over a long history, and two averages of a flat market must come out equal.
    out, windows = _windowed(values, period)
    out[period - 1 :] = windows.mean(axis=1)
    return out


def bollinger(closes: FloatArray, period: int, width: float) -> Bands:
    """Middle band: the SMA; the outer bands `width` population standard deviations away."""
    middle = sma(closes, period)
    deviation, windows = _windowed(closes, period)
    deviation[period - 1 :] = windows.std(axis=1)  # ddof=0: Bollinger's population deviation
    return Bands(middle - width * deviation, middle, middle + width * deviation)


def _recurse(values: FloatArray, seed: float, alpha: float, out: FloatArray) -> None:
    """Fill `out[k] = alpha * values[k] + (1 - alpha) * out[k - 1]`, with `out[-1] = seed`.

    Unrolled, the recursion is `y[k] = d**k * (seed + alpha * sum(x[j] * d**-j for j <= k))`
    with d = 1 - alpha: a cumulative sum. d**-k grows without bound, so the series is cut into
    blocks short enough to stay finite, each starting from the last value of the one before.
    """
    decay = 1.0 - alpha
    if decay == 0.0:
        out[:] = values
        return
    block = max(1, int(_LOG_BUDGET / -math.log(decay)))
    growth = np.exp(np.arange(1, block + 1) * -math.log(decay))
    level = seed
    for begin in range(0, len(values), block):
        chunk = values[begin : begin + block]
        scale = growth[: len(chunk)]
        smoothed = (level + alpha * np.cumsum(chunk * scale)) / scale
        out[begin : begin + len(chunk)] = smoothed
        level = float(smoothed[-1])


def smooth(values: FloatArray, period: int, alpha: float) -> FloatArray:
    """Exponential smoothing seeded with the mean of the first `period` defined values.

    Leading NaNs (another indicator's warm-up) are skipped; NaNs after them are not expected.
    """
    _check_period(period)
    out = np.full(values.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(values))
    if defined.size == 0 or defined[0] + period > len(values):
        return out
    seed_at = int(defined[0]) + period - 1
    out[seed_at] = values[defined[0] : seed_at + 1].mean()
    _recurse(values[seed_at + 1 :], float(out[seed_at]), alpha, out[seed_at + 1 :])
    return out


def ema(values: FloatArray, period: int) -> FloatArray:
    """The standard EMA: smoothing 2 / (period + 1), seeded with the SMA of its first period."""
    return smooth(values, period, 2.0 / (period + 1))


def rsi(closes: FloatArray, period: int) -> FloatArray:
    """Wilder's RSI: gains and losses smoothed by 1 / period, seeded with their plain average.

    Defined from index `period` (it needs `period` changes). A window with no movement at all
    reads 50: neither side has the upper hand.
    """
    change = np.diff(closes, prepend=np.nan)
    gains = smooth(np.clip(change, 0.0, None), period, 1.0 / period)
    losses = smooth(np.clip(-change, 0.0, None), period, 1.0 / period)
    total = gains + losses
    out = np.full(closes.shape, np.nan)
    # 100 - 100 / (1 + gain / loss), rewritten so a window without losses needs no division by 0.
    np.divide(100.0 * gains, total, out=out, where=total > 0)
    out[total == 0] = 50.0
    return out


def macd(closes: FloatArray, fast: int, slow: int, signal: int) -> Macd:
    """MACD line (fast EMA - slow EMA), its signal line (an EMA of it) and their difference."""
    line = ema(closes, fast) - ema(closes, slow)
    signal_line = ema(line, signal)
    return Macd(line, signal_line, line - signal_line)
