"""Market data: symbols, tickers and candles for signed-in users; candle imports for admins."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated

import strawberry

from app.broker import Message
from app.market import importer
from app.market import service as market_service
from app.market.bars import Bar
from app.market.service import SymbolView, TickerView
from resolvers.feeds import follow
from schema.context import Info
from schema.market import (
    CandleConnection,
    CandleType,
    ImportCandlesInput,
    ImportCandlesPayload,
    SymbolType,
    TickerType,
    Timeframe,
)
from schema.permissions import IsAdmin, IsAuthenticated


@strawberry.type
class MarketQuery:
    @strawberry.field(permission_classes=[IsAuthenticated], description="Symbols, by name.")
    async def symbols(self, info: Info, include_inactive: bool = False) -> list[SymbolType]:
        async with info.context.read() as session:
            found = await market_service.list_symbols(session, active_only=not include_inactive)
        return [SymbolType.from_model(symbol) for symbol in found]

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The symbol's last price and 24h change; null before its first price.",
    )
    async def ticker(self, info: Info, symbol: str) -> TickerType | None:
        async with info.context.read() as session:
            found = await market_service.get_symbol_by_name(session, name=symbol)
            view = await market_service.ticker_of(session, found)
        info.context.loaders.remember(SymbolView.of(found))
        return None if view is None else TickerType.from_view(view, symbol_id=found.id)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Candles opening in [from, to), oldest first (at most 1000 a page).",
    )
    async def candles(
        self,
        info: Info,
        symbol: str,
        timeframe: Timeframe,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> CandleConnection:
        async with info.context.read() as session:
            page = await market_service.candles(
                session,
                symbol=symbol,
                timeframe=timeframe,
                from_=from_,
                to=to,
                first=first,
                after=after,
            )
        return CandleConnection.from_page(page, CandleType.from_model)


@strawberry.type
class MarketMutation:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description=f"Import up to {importer.MAX_BATCH} candles, replacing those at the same "
        "times; one bad row and nothing is imported.",
    )
    async def import_candles(self, info: Info, input: ImportCandlesInput) -> ImportCandlesPayload:
        async with info.context.unit_of_work() as session:
            imported = await importer.import_batch(
                session,
                symbol=input.symbol,
                timeframe=input.timeframe,
                rows=[row.to_bar() for row in input.rows],
            )
        return ImportCandlesPayload(
            symbol=imported.symbol, timeframe=imported.timeframe, imported=imported.count
        )


@strawberry.type
class MarketSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated], description="The symbol's live price at every tick."
    )
    async def market_data(self, info: Info, symbol: str) -> AsyncGenerator[TickerType, None]:
        async with info.context.read() as session:
            found = await market_service.get_symbol_by_name(session, name=symbol)
        # Known before the first event: its executions (shared by many subscribers) then show
        # prices to the tick without reading the symbol again.
        info.context.loaders.remember(SymbolView.of(found))

        async def decode(message: Message) -> TickerType:
            return TickerType.from_view(TickerView.decode(message.data), symbol_id=found.id)

        return follow(info, market_service.ticker_channel(found.name), decode)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated], description="Each candle of the series as it closes."
    )
    async def candles(
        self, info: Info, symbol: str, timeframe: Timeframe
    ) -> AsyncGenerator[CandleType, None]:
        async with info.context.read() as session:
            found = await market_service.get_symbol_by_name(session, name=symbol)
        info.context.loaders.remember(SymbolView.of(found))

        async def decode(message: Message) -> CandleType:
            return CandleType.from_bar(Bar.decode(message.data), symbol_id=found.id)

        async for candle in follow(
            info, market_service.candles_channel(found.name, timeframe), decode
        ):
            yield candle
