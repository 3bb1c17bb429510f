"""Every operation, run by a second user against the first user's objects.

An id of another user's object is NOT_FOUND, exactly like an id that does not exist; lists show
none of the first user's rows; and nothing of the first user's changes. The walk is checked
against the schema itself: a new root field must be added here (or named as holding no
user-owned data) or this test fails.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import service as bot_service
from app.bot.models import BotStatus
from app.config import Settings
from app.market.models import Symbol
from app.order import service as order_service
from app.order.models import OrderStatus
from app.strategy import service as strategy_service
from resolvers.root import TradeGraphSchema
from tests.conftest import Execute
from tests.factories import data, error_codes, make_bot, make_user, place, set_price

# Root fields that read or change no user-owned trading object: accounts (scoped by the token
# itself or admin-only), market data (shared by everyone) and the strategy kinds.
NOT_OWNED = {
    "me",
    "users",
    "register",
    "login",
    "refreshToken",
    "logout",
    "updateProfile",
    "changePassword",
    "setUserRole",
    "deactivateUser",
    "symbols",
    "ticker",
    "candles",
    "importCandles",
    "strategyKinds",
}

# field: (document, variables); $S strategy, $B bot, $O open order, $F filled order, $Y symbol.
BY_ID: dict[str, tuple[str, dict[str, str]]] = {
    "strategy": ("query($S: ID!) { strategy(id: $S) { id } }", {}),
    "updateStrategy": (
        'mutation($S: ID!) { updateStrategy(id: $S, input: {name: "mine"}) { id } }',
        {},
    ),
    "deleteStrategy": ("mutation($S: ID!) { deleteStrategy(id: $S) }", {}),
    "bot": ("query($B: ID!) { bot(id: $B) { id } }", {}),
    "createBot": (
        """mutation($S: ID!, $Y: String!) { createBot(input: {name: "b", strategyId: $S,
        symbol: $Y, timeframe: M1, allocatedCapital: "100"}) { id } }""",
        {},
    ),
    "updateBot": ('mutation($B: ID!) { updateBot(id: $B, input: {name: "x"}) { id } }', {}),
    "deleteBot": ("mutation($B: ID!) { deleteBot(id: $B) }", {}),
    "startBot": ("mutation($B: ID!) { startBot(id: $B) { id } }", {}),
    "pauseBot": ("mutation($B: ID!) { pauseBot(id: $B) { id } }", {}),
    "stopBot": ("mutation($B: ID!) { stopBot(id: $B, closePosition: true) { id } }", {}),
    "order": ("query($F: ID!) { order(id: $F) { id } }", {}),
    "cancelOrder": ("mutation($O: ID!) { cancelOrder(id: $O) { id } }", {}),
    "placeOrder": (
        """mutation($B: ID!, $Y: String!) { placeOrder(input: {symbol: $Y, side: BUY,
        type: MARKET, quantity: "1", botId: $B}) { id } }""",
        {},
    ),
    "cancelAllOrders": ("mutation($B: ID!) { cancelAllOrders(botId: $B) { id } }", {}),
    "closePosition": (
        "mutation($B: ID!, $Y: String!) { closePosition(symbol: $Y, botId: $B) { id } }",
        {},
    ),
    "orders": ("query($B: ID!) { orders(botId: $B) { nodes { id } } }", {}),
    "trades": ("query($F: ID!) { trades(orderId: $F) { nodes { id } } }", {}),
    "positions": ("query($B: ID!) { positions(botId: $B) { quantity } }", {}),
}

# Lists without ids: the second user sees an empty list (or their own starting cash).
LISTS: dict[str, tuple[str, Any]] = {
    "strategies": ("{ strategies { nodes { id } } }", {"nodes": []}),
    "bots": ("{ bots { nodes { id } } }", {"nodes": []}),
    "portfolio": ("{ portfolio { balance exposure } }", {"balance": "10000", "exposure": "0"}),
}
# Changes without ids act on the caller's own data only; the first user's is checked after.
OWN: dict[str, str] = {
    "createStrategy": """mutation { createStrategy(input: {name: "theirs",
        kind: SMA_CROSSOVER}) { id } }""",
    "resetPaperAccount": "mutation { resetPaperAccount { balance } }",
}
# `orders`, `trades` and `positions` are walked twice: by id above and as plain lists here.
PLAIN = {
    "orders": "{ orders { nodes { id } } }",
    "trades": "{ trades { nodes { id } } }",
    "positions": "{ positions { quantity } }",
}


def root_fields(schema: TradeGraphSchema) -> set[str]:
    graphql = schema._schema
    assert graphql.query_type is not None
    assert graphql.mutation_type is not None
    return set(graphql.query_type.fields) | set(graphql.mutation_type.fields)


async def test_the_walk_covers_every_root_field(schema: TradeGraphSchema) -> None:
    walked = set(BY_ID) | set(LISTS) | set(OWN) | NOT_OWNED
    assert root_fields(schema) == walked


async def test_a_second_user_reaches_nothing_of_the_first(
    gql: Execute, session: AsyncSession, settings: Settings
) -> None:
    owner = await make_user(session)
    bot = await make_bot(session, owner=owner)
    symbol = await session.get(Symbol, bot.symbol_id)
    assert symbol is not None
    await set_price(session, symbol=symbol, price="100")
    filled = await place(session, settings, owner, symbol=symbol.name, bot_id=bot.id)
    resting = await place(
        session, settings, owner, symbol=symbol.name, type="LIMIT", price=Decimal(90), bot_id=bot.id
    )
    await bot_service.start(session, owner_id=owner.id, bot_id=bot.id)
    ids = {
        "S": str(bot.strategy_id),
        "B": str(bot.id),
        "O": str(resting.id),
        "F": str(filled.id),
        "Y": symbol.name,
    }
    stranger = await make_user(session)
    for field, (document, extra) in BY_ID.items():
        names = [name for name in ids if f"${name}" in document]
        variables = {name: ids[name] for name in names} | extra
        result = await gql(document, variables, user=stranger)
        assert error_codes(result) == ["NOT_FOUND"], (field, result.errors)
    for field, (document, expected) in LISTS.items():
        assert data(await gql(document, user=stranger))[field] == expected, field
    for document in OWN.values():
        data(await gql(document, user=stranger))
    for field, document in PLAIN.items():
        found = data(await gql(document, user=stranger))[field]
        assert found in ([], {"nodes": []}), field

    # The first user's objects are as they were.
    await session.refresh(bot)
    assert bot.status is BotStatus.RUNNING
    order = await order_service.get_order(session, owner_id=owner.id, order_id=resting.id)
    await session.refresh(order)
    assert order.status is OrderStatus.OPEN
    strategy = await strategy_service.get_owned(
        session, owner_id=owner.id, strategy_id=bot.strategy_id
    )
    assert strategy.name != "mine"
    mine = await strategy_service.list_strategies(session, owner_id=owner.id, first=10, after=None)
    assert [s.id for s in mine.items] == [strategy.id]
    positions = await order_service.list_positions(session, owner_id=owner.id, bot_id=bot.id)
    assert [p.quantity for p in positions] == [1]
