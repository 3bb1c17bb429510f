"""Bot types: a strategy run on a symbol, with its orders, trades and positions nested."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from app.bot.models import Bot
from app.bot.models import BotMode as BotModeModel
from app.bot.models import BotStatus as BotStatusModel
from app.errors import InvalidInput
from app.market import display
from schema.context import Info
from schema.market import Shown, Timeframe, symbol_name
from schema.order import OrderType, PositionType, TradeType
from schema.pagination import Connection
from schema.strategy import StrategyType

strawberry.enum(
    BotModeModel,
    name="BotMode",
    description="PAPER trades on the paper exchange; LIVE is refused until an exchange "
    "connector exists",
)
strawberry.enum(
    BotStatusModel,
    name="BotStatus",
    description="CREATED, RUNNING (evaluates every closed candle), PAUSED, STOPPED, ERROR "
    "(see `errorReason`)",
)
BotMode = BotModeModel
BotStatus = BotStatusModel
MAX_NESTED = 100


def _count(first: int) -> int:
    if not 1 <= first <= MAX_NESTED:
        raise InvalidInput(f"first must be between 1 and {MAX_NESTED}", field="first")
    return first


@strawberry.type(name="Bot")
class BotType:
    id: strawberry.ID
    name: str
    timeframe: Timeframe
    mode: BotMode
    allocated_capital: Decimal = strawberry.field(description="In the quote currency.")
    status: BotStatus
    error_reason: str | None = strawberry.field(
        description="Why it stopped: its fault when in ERROR, or why it was STOPPED for its "
        "owner (the account was deactivated)."
    )
    last_candle_at: datetime | None = strawberry.field(
        description="The open time of the last candle it evaluated."
    )
    started_at: datetime | None
    created_at: datetime
    updated_at: datetime
    strategy_id: strawberry.Private[int]
    symbol_id: strawberry.Private[int]

    @strawberry.field(graphql_type=str)
    def symbol(self, info: Info) -> Shown[str]:
        return symbol_name(info, self.symbol_id)

    @strawberry.field
    async def strategy(self, info: Info) -> StrategyType:
        strategy = await info.context.loaders.strategy_by_id.load(self.strategy_id)
        assert strategy is not None, "a strategy in use is never deleted (RESTRICT)"
        return StrategyType.from_model(strategy)

    @strawberry.field(description="Its latest orders, newest first.")
    async def orders(self, info: Info, first: int = 20) -> list[OrderType]:
        key = (int(self.id), _count(first))
        found = await info.context.loaders.latest_orders_by_bot.load(key)
        return [OrderType.from_model(order) for order in found]

    @strawberry.field(description="Its latest fills, newest first.")
    async def trades(self, info: Info, first: int = 20) -> list[TradeType]:
        key = (int(self.id), _count(first))
        found = await info.context.loaders.latest_trades_by_bot.load(key)
        return [TradeType.from_model(trade) for trade in found]

    @strawberry.field(description="Its positions, flat ones included (they hold realised PnL).")
    async def positions(self, info: Info) -> list[PositionType]:
        found = await info.context.loaders.positions_by_bot.load(int(self.id))
        return [PositionType.from_model(position) for position in found]

    @classmethod
    def from_model(cls, bot: Bot) -> BotType:
        return cls(
            id=strawberry.ID(str(bot.id)),
            name=bot.name,
            timeframe=bot.timeframe,
            mode=bot.mode,
            allocated_capital=display.money(bot.allocated_capital),
            status=bot.status,
            error_reason=bot.error_reason,
            last_candle_at=bot.last_candle_at,
            started_at=bot.started_at,
            created_at=bot.created_at,
            updated_at=bot.updated_at,
            strategy_id=bot.strategy_id,
            symbol_id=bot.symbol_id,
        )


BotConnection = Connection[BotType]


@strawberry.input
class CreateBotInput:
    name: str
    strategy_id: strawberry.ID
    symbol: str
    timeframe: Timeframe
    allocated_capital: Decimal = strawberry.field(
        description="The quote currency it may spend; its buys are sized from it."
    )
    mode: BotMode = BotMode.PAPER


@strawberry.input
class UpdateBotInput:
    """Only while the bot is not running; omitted fields stay as they are."""

    name: str | None = None
    strategy_id: strawberry.ID | None = None
    symbol: str | None = strawberry.field(
        default=None, description="Only while the bot holds no position."
    )
    timeframe: Timeframe | None = None
    allocated_capital: Decimal | None = None
    mode: BotMode | None = None
