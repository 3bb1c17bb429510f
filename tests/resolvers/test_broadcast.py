"""Subscriptions everyone may share run once per distinct document, whatever their members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app import observability
from app.market import service as market_service
from app.runtime import Runtime
from app.user.models import User
from resolvers.broadcast import MEMBER_QUEUE, Broadcasts, shared_field
from resolvers.root import TradeGraphSchema
from schema.context import Context
from schema.wire import SharedData
from tests.factories import make_symbol, make_user

PRICE = "subscription($s: String!) { marketData(symbol: $s) { symbol price } }"
PRICE_ONLY = "subscription($s: String!) { marketData(symbol: $s) { price } }"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (PRICE, "marketData"),
        ('subscription { candles(symbol: "X", timeframe: M1) { close } }', "candles"),
        ("subscription { orderUpdates { id } }", None),
        ("{ symbols { name } }", None),
        ('subscription { a: marketData(symbol: "X") { price } b: orderUpdates { id } }', None),
        ("subscription {", None),
    ],
)
def test_only_subscriptions_of_shared_fields_are_shared(
    document: str, expected: str | None
) -> None:
    assert shared_field(document, None) == expected


def _groups() -> float:
    value = observability.SUBSCRIPTIONS.labels(field="marketData")._value.get()
    return float(value)


async def _subscribe(
    schema: TradeGraphSchema, runtime: Runtime, user: User, document: str, symbol: str
) -> AsyncIterator[Any]:
    context = Context(runtime, "t", "x", user=user, long_lived=True)
    stream = await schema.subscribe(document, variable_values={"s": symbol}, context_value=context)
    assert isinstance(stream, AsyncIterator)
    return stream


async def test_members_of_one_document_share_one_execution(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    symbol = await make_symbol(session)
    users = [await make_user(session) for _ in range(3)]
    before = _groups()
    channel = market_service.ticker_channel(symbol.name)
    streams, pending = [], []
    # One at a time (the tests' sessions share a connection): two groups, not three members.
    for user, document, listening in zip(users, (PRICE, PRICE, PRICE_ONLY), (1, 1, 2), strict=True):
        stream = await _subscribe(schema, runtime, user, document, symbol.name)
        streams.append(stream)
        pending.append(asyncio.ensure_future(anext(stream)))
        for _ in range(500):
            if runtime.broker.local_subscribers(channel) == listening:
                break
            await asyncio.sleep(0.01)
        assert runtime.broker.local_subscribers(channel) == listening
    assert _groups() == before + 2
    async with Context(runtime, "t", "x").unit_of_work() as unit:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        await market_service.set_price(unit, symbol_id=symbol.id, price=Decimal("7.5"), at=at)
    results = [(await asyncio.wait_for(p, 5)).data for p in pending]
    # One execution per document: its members hold one result, serialised once (schema/wire).
    assert isinstance(results[0], SharedData)
    assert results[0] is results[1]
    assert results[2] is not results[0]
    assert results == [
        {"marketData": {"symbol": symbol.name, "price": "7.5"}},
        {"marketData": {"symbol": symbol.name, "price": "7.5"}},
        {"marketData": {"price": "7.5"}},
    ]
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    assert runtime.broker.local_subscribers(channel) == 0
    assert _groups() == before


async def test_a_member_that_stops_reading_never_holds_up_the_others() -> None:
    broadcasts = Broadcasts()
    events: asyncio.Queue[int] = asyncio.Queue()

    async def source() -> AsyncIterator[int]:
        while True:
            yield await events.get()

    async def start() -> AsyncIterator[int]:
        return source()

    reader = broadcasts.join("prices", "marketData", start)
    stalled = broadcasts.join("prices", "marketData", start)
    pending = [asyncio.ensure_future(anext(member)) for member in (reader, stalled)]
    events.put_nowait(0)
    assert [await asyncio.wait_for(p, 5) for p in pending] == [0, 0]
    # `stalled` takes nothing more; every later result still reaches `reader` at once.
    total = MEMBER_QUEUE + 50
    for n in range(1, total):
        events.put_nowait(n)
        assert await asyncio.wait_for(anext(reader), 5) == n
    # What `stalled` kept is the newest MEMBER_QUEUE results, oldest first: market data
    # gives way like the feed itself.
    assert await asyncio.wait_for(anext(stalled), 5) == total - MEMBER_QUEUE
    await reader.aclose()
    await stalled.aclose()
