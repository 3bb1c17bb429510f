"""Market data services on SQLite and PostgreSQL: symbols, tickers, candles, the OHLCV rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.errors import InvalidInput, NotFound
from app.market import service as market_service
from app.market.bars import Bar
from app.market.models import Timeframe
from app.pagination import encode_cursor
from tests.factories import make_candles, make_symbol

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)


async def test_default_symbols_are_listed_by_name(session: AsyncSession) -> None:
    names = [symbol.name for symbol in await market_service.list_symbols(session)]
    assert {"BTC-USD", "ETH-USD", "SOL-USD"} <= set(names)
    assert names == sorted(names)
    btc = await market_service.get_symbol_by_name(session, name=" btc-usd ")
    assert (btc.base, btc.quote, btc.price_tick) == ("BTC", "USD", Decimal("0.01"))


async def test_inactive_symbols_are_listed_only_when_asked(session: AsyncSession) -> None:
    symbol = await make_symbol(session, is_active=False)
    active = await market_service.list_symbols(session)
    every = await market_service.list_symbols(session, active_only=False)
    assert symbol not in active
    assert symbol in every


async def test_an_unknown_symbol_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFound) as caught:
        await market_service.get_symbol_by_name(session, name="DOGE-EUR")
    assert caught.value.field == "symbol"


async def test_ticker_change_is_against_the_price_24_hours_earlier(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    # 1m candles opening 23:58 and 23:59 close at 100 and 104; the second ends at midnight.
    await make_candles(
        session, symbol=symbol, start=JAN_1 - timedelta(minutes=2), closes=["100", "104"]
    )
    at = JAN_1 + timedelta(days=1, seconds=30)
    view = await market_service.set_price(session, symbol_id=symbol.id, price=Decimal(110), at=at)
    # 24 h before 00:00:30 the last finished candle is the 23:59 one: 110 - 104 = 6, and
    # 6 / 104 = 5.769...%, which rounds to 5.77.
    assert (view.price, view.updated_at) == (Decimal(110), at)
    assert view.change_24h == Decimal(6)
    assert view.change_percent_24h == Decimal("5.77")
    falling = await market_service.set_price(
        session, symbol_id=symbol.id, price=Decimal("97.5"), at=at + timedelta(seconds=5)
    )
    # 97.5 - 104 = -6.5; -6.5 / 104 = -6.25 % exactly.
    assert (falling.change_24h, falling.change_percent_24h) == (Decimal("-6.5"), Decimal("-6.25"))
    assert await market_service.ticker(session, symbol=symbol.name) == falling


async def test_without_a_live_price_the_last_candle_close_is_the_price(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=JAN_1, closes=["50"])
    await make_candles(session, symbol=symbol, start=JAN_1 + timedelta(days=1), closes=["75"])
    view = await market_service.ticker(session, symbol=symbol.name)
    assert view is not None
    # The price is from 00:01 on Jan 2 (the candle's end); a day earlier the 00:00 candle had
    # closed at 50: +25, +50 %.
    assert view.price == Decimal(75)
    assert view.updated_at == JAN_1 + timedelta(days=1, minutes=1)
    assert (view.change_24h, view.change_percent_24h) == (Decimal(25), Decimal("50.00"))


async def test_ticker_without_history_has_no_change_and_without_prices_is_none(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session)
    assert await market_service.ticker(session, symbol=symbol.name) is None
    view = await market_service.set_price(session, symbol_id=symbol.id, price=Decimal(3), at=JAN_1)
    assert (view.change_24h, view.change_percent_24h) == (None, None)


async def test_set_price_records_a_ticker_event_on_the_symbol_channel(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session)
    view = await market_service.set_price(
        session, symbol_id=symbol.id, price=Decimal("12.34"), at=JAN_1
    )
    [event] = events.pending(session)
    assert event.channel == f"market:{symbol.name}:ticker"
    assert event.kind == "ticker.changed"
    assert market_service.TickerView.decode(event.encode()) == view


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-1), Decimal("NaN")])
async def test_set_price_refuses_what_is_not_a_price(session: AsyncSession, price: Decimal) -> None:
    symbol = await make_symbol(session)
    with pytest.raises(InvalidInput) as caught:
        await market_service.set_price(session, symbol_id=symbol.id, price=price, at=JAN_1)
    assert caught.value.field == "price"


async def test_candles_page_by_open_time_within_from_and_to(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    bars = await make_candles(
        session, symbol=symbol, start=JAN_1, closes=["11", "12", "13", "14", "15"]
    )
    seen: list[datetime] = []
    after = None
    while True:
        page = await market_service.candles(
            session, symbol=symbol.name, timeframe=Timeframe.M1, first=2, after=after
        )
        seen += [candle.open_time for candle in page.items]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert seen == [bar.open_time for bar in bars]
    window = await market_service.candles(
        session,
        symbol=symbol.name,
        timeframe=Timeframe.M1,
        from_=JAN_1 + timedelta(minutes=1),
        to=datetime.fromisoformat("2024-01-01T00:03:00"),  # naive: read as UTC
    )
    assert [c.close for c in window.items] == [Decimal(12), Decimal(13)]
    assert not window.has_next_page


async def test_candles_of_another_timeframe_are_apart(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=JAN_1, closes=["9"], timeframe=Timeframe.H1)
    minutes = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.M1)
    hours = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.H1)
    assert (len(minutes.items), len(hours.items)) == (0, 1)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"after": "garbage"}, "after"),
        ({"after": encode_cursor(5)}, "after"),  # an id cursor is no time cursor
        ({"first": 0}, "first"),
        ({"first": 1001}, "first"),
        ({"from_": JAN_1, "to": JAN_1}, "to"),
    ],
)
async def test_candle_queries_refuse_bad_arguments(
    session: AsyncSession, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await market_service.candles(
            session,
            symbol="BTC-USD",
            timeframe=Timeframe.M1,
            **arguments,  # type: ignore[arg-type]
        )
    assert caught.value.field == field


def _bar(minute: int = 0, **values: str) -> Bar:
    prices = {"open": "10", "high": "12", "low": "9", "close": "11", "volume": "5", **values}
    return Bar(JAN_1 + timedelta(minutes=minute), **{k: Decimal(v) for k, v in prices.items()})


@pytest.mark.parametrize(
    ("bar", "field"),
    [
        (_bar(high="10.5"), "rows[0].high"),  # below the close
        (_bar(low="10.5"), "rows[0].low"),  # above the open
        (_bar(volume="-1"), "rows[0].volume"),
        (_bar(open="0", low="0"), "rows[0].open"),
        (_bar(close="Infinity"), "rows[0].close"),
        (_bar(volume="0.0000000000000000001"), "rows[0].volume"),  # 19 places
        (_bar(high="1e18"), "rows[0].high"),
        (Bar(JAN_1 + timedelta(seconds=30), *[Decimal(1)] * 5), "rows[0].time"),
    ],
)
async def test_upsert_refuses_inconsistent_candles(
    session: AsyncSession, bar: Bar, field: str
) -> None:
    symbol = await make_symbol(session)
    with pytest.raises(InvalidInput) as caught:
        await market_service.upsert_candles(
            session, symbol_id=symbol.id, timeframe=Timeframe.M1, rows=[bar]
        )
    assert caught.value.field == field


async def test_upsert_refuses_a_time_given_twice_and_a_misaligned_period(
    session: AsyncSession,
) -> None:
    symbol = await make_symbol(session)
    with pytest.raises(InvalidInput) as twice:
        await market_service.upsert_candles(
            session, symbol_id=symbol.id, timeframe=Timeframe.M1, rows=[_bar(), _bar(1), _bar()]
        )
    assert twice.value.field == "rows[2].time"
    with pytest.raises(InvalidInput) as misaligned:
        await market_service.upsert_candles(
            session, symbol_id=symbol.id, timeframe=Timeframe.M5, rows=[_bar(5), _bar(7)]
        )
    assert misaligned.value.field == "rows[1].time"
    assert "not the start of a 5m period" in misaligned.value.message


async def test_upsert_replaces_or_keeps_existing_candles(session: AsyncSession) -> None:
    symbol = await make_symbol(session)
    series: dict[str, Any] = {"symbol_id": symbol.id, "timeframe": Timeframe.M1}
    assert await market_service.upsert_candles(session, **series, rows=[_bar(0), _bar(1)]) == 2
    assert (
        await market_service.upsert_candles(
            session, **series, rows=[_bar(1, close="12"), _bar(2)], replace=False
        )
        == 1
    )
    assert await market_service.upsert_candles(session, **series, rows=[_bar(0, close="9.5")]) == 1
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.M1)
    assert [c.close for c in page.items] == [Decimal("9.5"), Decimal(11), Decimal(11)]
