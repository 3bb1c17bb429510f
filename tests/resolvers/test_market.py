"""Market data through the real schema: who may read and import, and what they get."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import ExecutionResult

from app.market import service as market_service
from app.market.models import Timeframe
from app.runtime import Runtime
from app.user.models import Role
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.conftest import Execute
from tests.factories import error_codes, make_candles, make_symbol, make_user

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
CANDLES = """query($s: String!, $tf: Timeframe!, $from: DateTime, $to: DateTime, $a: String) {
  candles(symbol: $s, timeframe: $tf, from: $from, to: $to, first: 2, after: $a) {
    nodes { openTime open high low close volume }
    pageInfo { hasNextPage endCursor }
  }
}"""
IMPORT = """mutation($input: ImportCandlesInput!) {
  importCandles(input: $input) { symbol timeframe imported }
}"""


def _data(result: ExecutionResult) -> dict[str, Any]:
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


async def test_market_data_needs_a_signed_in_user(gql: Execute) -> None:
    for document in ("{ symbols { name } }", '{ ticker(symbol: "BTC-USD") { price } }'):
        assert error_codes(await gql(document)) == ["UNAUTHENTICATED"]
    assert error_codes(await gql(CANDLES, {"s": "BTC-USD", "tf": "M1"})) == ["UNAUTHENTICATED"]


async def test_symbols_with_their_trading_rules(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    document = "{ symbols { name base quote priceTick quantityStep minNotional isActive } }"
    symbols = _data(await gql(document, user=user))["symbols"]
    assert symbols[0] == {
        "name": "BTC-USD",
        "base": "BTC",
        "quote": "USD",
        "priceTick": "0.01",
        "quantityStep": "0.00001",
        "minNotional": "10",
        "isActive": True,
    }


async def test_ticker_with_its_24h_change(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=JAN_1, closes=["80"])
    at = JAN_1 + timedelta(days=1, minutes=1)
    await market_service.set_price(session, symbol_id=symbol.id, price=Decimal("100.10"), at=at)
    document = """query($s: String!) {
      ticker(symbol: $s) { symbol price change24h changePercent24h updatedAt }
    }"""
    assert _data(await gql(document, {"s": symbol.name}, user=user))["ticker"] == {
        "symbol": symbol.name,
        "price": "100.1",
        "change24h": "20.1",
        "changePercent24h": "25.12",  # 20.10 / 80 = 25.125 %, half to even
        "updatedAt": "2024-01-02T00:01:00+00:00",
    }
    quiet = await make_symbol(session)
    assert _data(await gql(document, {"s": quiet.name}, user=user)) == {"ticker": None}
    assert error_codes(await gql(document, {"s": "NOPE"}, user=user)) == ["NOT_FOUND"]


async def test_candles_page_with_cursors(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=JAN_1, closes=["10", "11", "12", "13"])
    window = {"s": symbol.name, "tf": "M1", "from": "2024-01-01T00:01:00Z"}
    first = _data(await gql(CANDLES, window, user=user))["candles"]
    assert [n["close"] for n in first["nodes"]] == ["11", "12"]
    assert first["nodes"][0] == {
        "openTime": "2024-01-01T00:01:00+00:00",
        "open": "10",
        "high": "12",
        "low": "9",
        "close": "11",
        "volume": "1",
    }
    assert first["pageInfo"]["hasNextPage"] is True
    cursor = first["pageInfo"]["endCursor"]
    rest = _data(await gql(CANDLES, {**window, "a": cursor}, user=user))["candles"]
    assert [n["close"] for n in rest["nodes"]] == ["13"]
    assert rest["pageInfo"]["hasNextPage"] is False
    bad = await gql(CANDLES, {**window, "to": "2024-01-01T00:00:00Z"}, user=user)
    assert error_codes(bad) == ["BAD_USER_INPUT"]


async def test_prices_off_the_tick_are_shown_to_it(gql: Execute, session: AsyncSession) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    symbol = await make_symbol(session)  # tick 0.01
    noisy = {"open": "10.004", "high": "12.126", "low": "9.0049", "close": "11.115"}
    batch = {
        "symbol": symbol.name,
        "timeframe": "H1",
        "rows": _rows(1, **noisy, volume="2.1234567891"),
    }
    _data(await gql(IMPORT, {"input": batch}, user=admin))
    window = {"s": symbol.name, "tf": "H1"}
    (candle,) = _data(await gql(CANDLES, window, user=admin))["candles"]["nodes"]
    # Half to even: 11.115 goes up to 11.12 (1 is odd), 12.126 to 12.13.
    assert [candle[name] for name in ("open", "high", "low", "close", "volume")] == [
        "10",
        "12.13",
        "9",
        "11.12",
        "2.12345679",
    ]
    (stored,) = (
        await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.H1)
    ).items
    assert (stored.close, stored.volume) == (Decimal("11.115"), Decimal("2.1234567891"))
    await make_candles(session, symbol=symbol, start=JAN_1, closes=["80"])
    at = JAN_1 + timedelta(days=1, minutes=1)
    await market_service.set_price(session, symbol_id=symbol.id, price=Decimal("100.1049"), at=at)
    document = "query($s: String!) { ticker(symbol: $s) { price change24h changePercent24h } }"
    ticker = _data(await gql(document, {"s": symbol.name}, user=admin))["ticker"]
    assert ticker == {"price": "100.1", "change24h": "20.1", "changePercent24h": "25.13"}


def _rows(count: int, **changes: str) -> list[dict[str, str]]:
    row = {"open": "10", "high": "12", "low": "9", "close": "11", "volume": "2", **changes}
    return [{"time": (JAN_1 + timedelta(hours=n)).isoformat(), **row} for n in range(count)]


async def test_an_admin_imports_candles(gql: Execute, session: AsyncSession) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    symbol = await make_symbol(session)
    batch = {"symbol": symbol.name.lower(), "timeframe": "H1", "rows": _rows(3)}
    result = _data(await gql(IMPORT, {"input": batch}, user=admin))
    assert result == {"importCandles": {"symbol": symbol.name, "timeframe": "H1", "imported": 3}}
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.H1)
    assert [c.close for c in page.items] == [Decimal(11)] * 3


async def test_a_bad_row_names_itself_and_nothing_is_imported(
    gql: Execute, session: AsyncSession
) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    symbol = await make_symbol(session)
    rows = _rows(5)
    rows[3]["high"] = "10.5"
    result = await gql(
        IMPORT, {"input": {"symbol": symbol.name, "timeframe": "H1", "rows": rows}}, user=admin
    )
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "BAD_USER_INPUT", "field": "rows[3].high"}
    page = await market_service.candles(session, symbol=symbol.name, timeframe=Timeframe.H1)
    assert page.items == []


async def test_only_admins_import_candles(gql: Execute, session: AsyncSession) -> None:
    user = await make_user(session)
    batch = {"symbol": "BTC-USD", "timeframe": "H1", "rows": _rows(1)}
    assert error_codes(await gql(IMPORT, {"input": batch}, user=user)) == ["FORBIDDEN"]
    assert error_codes(await gql(IMPORT, {"input": batch})) == ["UNAUTHENTICATED"]


async def _next(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), 5)


async def test_market_data_follows_the_symbol_channel(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user = await make_user(session)
    symbol = await make_symbol(session)
    context = Context(runtime=runtime, request_id="t", client_address="x", user=user)
    document = "subscription($s: String!) { marketData(symbol: $s) { symbol price } }"
    stream = await schema.subscribe(
        document, variable_values={"s": symbol.name}, context_value=context
    )
    assert isinstance(stream, AsyncIterator)
    pending = asyncio.ensure_future(_next(stream))
    await asyncio.sleep(0.05)  # let the subscription reach its channel
    async with context.unit_of_work() as unit:
        await market_service.set_price(unit, symbol_id=symbol.id, price=Decimal("7.50"), at=JAN_1)
    result = await pending
    assert result.errors is None
    assert result.data == {"marketData": {"symbol": symbol.name, "price": "7.5"}}
    pending = asyncio.ensure_future(_next(stream))
    async with context.unit_of_work() as unit:
        await market_service.set_price(unit, symbol_id=symbol.id, price=Decimal("7.5051"), at=JAN_1)
    result = await pending
    # A price off the 0.01 tick (an imported feed) is shown to it.
    assert result.data == {"marketData": {"symbol": symbol.name, "price": "7.51"}}
    await stream.aclose()
