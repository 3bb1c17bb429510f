"""Candle values without the database: the OHLCV rules, rounding to a grid, aggregation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from app import money
from app.errors import InvalidInput
from app.market.models import Timeframe
from app.money import STORED_LIMIT as STORED_LIMIT
from app.money import STORED_PLACES as STORED_PLACES

# How many row problems one error message lists before it says "and N more".
LISTED_PROBLEMS = 10
PRICE_FIELDS = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class Bar:
    """One candle's values; `open_time` is the start of its period."""

    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def to_payload(self) -> dict[str, str]:
        """Exact text for event payloads: JSON numbers would turn decimals into floats."""
        values = {name: format(getattr(self, name), "f") for name in (*PRICE_FIELDS, "volume")}
        return {"openTime": self.open_time.isoformat(), **values}

    @classmethod
    def decode(cls, data: str) -> Bar:
        """The candle carried by a `candle.closed` event, as a subscriber receives it."""
        payload = json.loads(data)["payload"]
        return cls(
            open_time=datetime.fromisoformat(payload["openTime"]),
            **{name: Decimal(payload[name]) for name in (*PRICE_FIELDS, "volume")},
        )


@dataclass(frozen=True, slots=True)
class RowProblem:
    """What is wrong with the row at `index` (0-based) of a batch, and in which field."""

    index: int
    field: str
    message: str


def as_utc(moment: datetime) -> datetime:
    """Naive times are read as UTC (exported files rarely carry a zone); aware ones converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def round_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The nearest multiple of `step` (half to even), for grids that are not powers of ten."""
    return (value / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step


def _unstorable(name: str, value: Decimal) -> str | None:
    # NUMERIC(36, 18) on PostgreSQL would round extra places silently (SQLite's text would
    # not), and refuse larger numbers; both databases must store exactly what was accepted.
    problem = money.unstorable(value)
    return None if problem is None else f"{name} {problem}"


def problems(bar: Bar, timeframe: Timeframe) -> list[tuple[str, str]]:
    """(field, message) for every rule the bar breaks; field `time` is its open time."""
    found: list[tuple[str, str]] = []
    for name in (*PRICE_FIELDS, "volume"):
        message = _unstorable(name, getattr(bar, name))
        if message is not None:
            found.append((name, message))
    if found:
        return found
    found += [
        (name, f"{name} must be positive") for name in PRICE_FIELDS if getattr(bar, name) <= 0
    ]
    if bar.volume < 0:
        found.append(("volume", "volume must not be negative"))
    if bar.high < max(bar.open, bar.close, bar.low):
        found.append(("high", "high must be at least open, close and low"))
    if bar.low > min(bar.open, bar.close):
        found.append(("low", "low must be at most open and close"))
    if bar.open_time.tzinfo is None or timeframe.floor(bar.open_time) != bar.open_time:
        found.append(
            ("time", f"{bar.open_time.isoformat()} is not the start of a {timeframe} period")
        )
    return found


def _row_name(index: int) -> str:
    return f"rows[{index}]"


def check_rows(
    rows: Sequence[Bar], timeframe: Timeframe, *, name: Callable[[int], str] = _row_name
) -> list[RowProblem]:
    """Every problem of a batch: each row's own, and open times given twice (the earlier row
    named by `name`, a line of a file or an index of a batch)."""
    found: list[RowProblem] = []
    first_seen: dict[datetime, int] = {}
    for index, bar in enumerate(rows):
        found += [RowProblem(index, name, text) for name, text in problems(bar, timeframe)]
        earlier = first_seen.setdefault(bar.open_time, index)
        if earlier != index:
            found.append(RowProblem(index, "time", f"the same time as {name(earlier)}"))
    return found


def rows_error(found: Sequence[RowProblem]) -> InvalidInput:
    """One error for a rejected batch: it names the first bad field and lists the problems."""
    listed = [f"{_row_name(p.index)}.{p.field}: {p.message}" for p in found[:LISTED_PROBLEMS]]
    more = len(found) - LISTED_PROBLEMS
    text = "; ".join(listed) + (f" (and {more} more)" if more > 0 else "")
    first = found[0]
    return InvalidInput(text, field=f"{_row_name(first.index)}.{first.field}")


def aggregate(bars: Sequence[Bar], *, open_time: datetime) -> Bar:
    """The candle of a longer period from its shorter ones, in time order."""
    return Bar(
        open_time=open_time,
        open=bars[0].open,
        high=max(bar.high for bar in bars),
        low=min(bar.low for bar in bars),
        close=bars[-1].close,
        volume=sum((bar.volume for bar in bars), Decimal(0)),
    )


def aggregate_series(minutes: Iterable[Bar], timeframe: Timeframe, *, until: datetime) -> list[Bar]:
    """Candles of `timeframe` built from 1m ones; only periods that ended by `until` count."""
    periods: dict[datetime, list[Bar]] = {}
    for bar in minutes:
        periods.setdefault(timeframe.floor(bar.open_time), []).append(bar)
    return [
        aggregate(group, open_time=start)
        for start, group in periods.items()
        if start + timeframe.duration <= until
    ]
