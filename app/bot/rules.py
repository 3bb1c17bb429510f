"""A bot's input rules, without the database: timeframe, mode and capital."""

from __future__ import annotations

from decimal import Decimal

from app.bot.models import BotMode
from app.errors import InvalidInput
from app.market.bars import STORED_LIMIT, STORED_PLACES
from app.market.models import Timeframe


def parse_timeframe(value: Timeframe | str) -> Timeframe:
    """A timeframe by value ("1h") or by name ("H1"), as GraphQL enums travel by name."""
    if isinstance(value, Timeframe):
        return value
    try:
        return Timeframe(value)
    except ValueError:
        pass
    try:
        return Timeframe[value]
    except KeyError:
        choices = ", ".join(t.value for t in Timeframe)
        raise InvalidInput(
            f"unknown timeframe {value!r}; one of {choices}", field="timeframe"
        ) from None


def parse_mode(value: BotMode | str) -> BotMode:
    try:
        mode = BotMode(value)
    except ValueError:
        raise InvalidInput(f"unknown mode {value!r}", field="mode") from None
    if mode is BotMode.LIVE:
        raise InvalidInput(
            "live trading needs an exchange connector, and none exists yet; use PAPER",
            field="mode",
        )
    return mode


def check_capital(value: Decimal) -> Decimal:
    """Positive, and storable exactly (at most 18 decimal places, below 10**18)."""
    field = "allocatedCapital"
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise InvalidInput("allocated capital must be a positive amount", field=field)
    exponent = value.as_tuple().exponent
    if value >= STORED_LIMIT or (isinstance(exponent, int) and exponent < -STORED_PLACES):
        raise InvalidInput(
            f"allocated capital must be below 1e18 with at most {STORED_PLACES} decimal places",
            field=field,
        )
    return value
