"""Per-request DataLoaders: nested fields batch their reads into one statement per kind.

Every loader is keyed by ids reached through objects the current user already owns (an order's
trades, a bot's orders), so the loaders themselves need no owner filter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from strawberry.dataloader import DataLoader

from app.bot.models import Bot
from app.market import service as market_service
from app.market.service import SymbolView
from app.order.models import Order, Position, Trade
from app.strategy.models import Strategy
from app.user.models import User

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
History = TypeVar("History", Order, Trade)
Row = TypeVar("Row", Order, Trade, Position)
Reader = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# A bot's latest orders or trades: (bot id, how many).
LatestKey = tuple[int, int]


def _one_each(keys: Sequence[K], rows: Iterable[T], key_of: Callable[[T], K]) -> list[T | None]:
    found = {key_of(row): row for row in rows}
    return [found.get(key) for key in keys]


def _all_each(
    keys: Sequence[K], rows: Iterable[T], key_of: Callable[[T], K | None]
) -> list[list[T]]:
    grouped: dict[K | None, list[T]] = defaultdict(list)
    for row in rows:
        grouped[key_of(row)].append(row)
    return [grouped.get(key, []) for key in keys]


class Loaders:
    def __init__(self, read: Reader, *, symbols: dict[int, SymbolView]) -> None:
        # The context's reads: over HTTP one session per request, taken in turns.
        self._read_session = read
        # Symbol id -> name, tick and step, kept by the process (the runtime): they never
        # change, and every order, trade and position shows its symbol and is rounded to it.
        self._symbols = symbols
        self.user_by_id = self._by_id(User, User.id)
        self.symbol_by_id: DataLoader[int, SymbolView | None] = DataLoader(load_fn=self._symbols_of)
        self.order_by_id = self._by_id(Order, Order.id)
        self.trade_by_id = self._by_id(Trade, Trade.id)
        self.position_by_id = self._by_id(Position, Position.id)
        self.trades_by_order: DataLoader[int, list[Trade]] = DataLoader(
            load_fn=self._trades_by_order
        )
        self.last_price_by_symbol: DataLoader[int, Decimal | None] = DataLoader(
            load_fn=self._last_prices
        )
        self.bot_by_id = self._by_id(Bot, Bot.id)
        self.strategy_by_id = self._by_id(Strategy, Strategy.id)
        self.latest_orders_by_bot = self._latest(Order)
        self.latest_trades_by_bot = self._latest(Trade)
        self.positions_by_bot: DataLoader[int, list[Position]] = DataLoader(
            load_fn=self._positions_by_bot
        )

    def row_by_id(self, model: type[Row]) -> DataLoader[int, Row | None]:
        """The loader of an order, trade or position by id (what a feed's event names)."""
        loaders: dict[type[Any], DataLoader[int, Any]] = {
            Order: self.order_by_id,
            Trade: self.trade_by_id,
            Position: self.position_by_id,
        }
        return loaders[model]

    def _read(self, query: Callable[[AsyncSession], Awaitable[T]]) -> Awaitable[T]:
        async def run() -> T:
            async with self._read_session() as session:
                return await query(session)

        return run()

    def _by_id(
        self, model: type[T], column: InstrumentedAttribute[Any]
    ) -> DataLoader[int, T | None]:
        async def load(ids: Sequence[int]) -> list[T | None]:
            async def query(session: AsyncSession) -> list[T | None]:
                rows = (await session.scalars(select(model).where(column.in_(ids)))).all()
                return _one_each(ids, rows, lambda row: getattr(row, column.key))

            return await self._read(query)

        return DataLoader(load_fn=load)

    def remember(self, symbol: SymbolView) -> None:
        """A symbol a resolver has read anyway: its rows' fields need not read it again."""
        self._symbols[symbol.id] = symbol

    async def _symbols_of(self, ids: Sequence[int]) -> list[SymbolView | None]:
        missing = [i for i in ids if i not in self._symbols]
        if missing:

            async def query(session: AsyncSession) -> None:
                found = await market_service.symbol_views(session, symbol_ids=missing)
                self._symbols.update({view.id: view for view in found})

            await self._read(query)
        return [self._symbols.get(i) for i in ids]

    async def _trades_by_order(self, ids: Sequence[int]) -> list[list[Trade]]:
        async def query(session: AsyncSession) -> list[list[Trade]]:
            statement = select(Trade).where(Trade.order_id.in_(ids)).order_by(Trade.id)
            rows = (await session.scalars(statement)).all()
            return _all_each(ids, rows, lambda trade: trade.order_id)

        return await self._read(query)

    async def _last_prices(self, ids: Sequence[int]) -> list[Decimal | None]:
        async def query(session: AsyncSession) -> list[Decimal | None]:
            found = await market_service.last_prices(session, symbol_ids=ids)
            return [found.get(symbol_id) for symbol_id in ids]

        return await self._read(query)

    def _latest(self, model: type[History]) -> DataLoader[LatestKey, list[History]]:
        """Each bot's newest rows, as many as asked: one windowed statement per batch, so a
        page of bots with their histories stays one statement however many bots it holds."""

        async def load(keys: Sequence[LatestKey]) -> list[list[History]]:
            async def query(session: AsyncSession) -> list[list[History]]:
                bot_ids = sorted({bot_id for bot_id, _ in keys})
                most = max(count for _, count in keys)
                rank = (
                    func.row_number()
                    .over(partition_by=model.bot_id, order_by=model.id.desc())
                    .label("rank")
                )
                # The rows come out of the window itself: no join back to the table.
                ranked = select(model, rank).where(model.bot_id.in_(bot_ids)).subquery()
                row = aliased(model, ranked)
                statement = select(row).where(ranked.c.rank <= most).order_by(ranked.c.id.desc())
                rows = (await session.scalars(statement)).all()
                grouped = _all_each(bot_ids, rows, lambda row: row.bot_id)
                by_bot = dict(zip(bot_ids, grouped, strict=True))
                return [by_bot[bot_id][:count] for bot_id, count in keys]

            return await self._read(query)

        return DataLoader(load_fn=load)

    async def _positions_by_bot(self, ids: Sequence[int]) -> list[list[Position]]:
        async def query(session: AsyncSession) -> list[list[Position]]:
            statement = select(Position).where(Position.bot_key.in_(ids)).order_by(Position.id)
            rows = (await session.scalars(statement)).all()
            return _all_each(ids, rows, lambda position: position.bot_key)

        return await self._read(query)
