"""Nested fields load through DataLoaders: the statements of a query do not grow with its rows.

The same nested query runs over 5 bots and over 50 (each with orders, fills and a position);
the number of SQL statements it sends must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.market.models import Symbol
from app.user.models import User
from tests.conftest import Execute
from tests.factories import data, make_bot, make_strategy, make_trader, make_user, place

NESTED = """query($first: Int!) { bots(first: $first) { nodes {
  id name symbol status strategy { id name kind }
  orders(first: 5) { id symbol status bot { id name } trades { id price order { id } } }
  trades(first: 5) { id symbol quantity order { id status } bot { id } }
  positions { symbol quantity averagePrice markPrice unrealizedPnl bot { id } }
} } }"""
ORDERS = """query($first: Int!) { orders(first: $first) { nodes {
  id symbol status quantity bot { id name } trades { id fee } } } }"""


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _bots_that_traded(
    session: AsyncSession, settings: Settings, user: User, symbol: Symbol, count: int
) -> None:
    strategy = await make_strategy(session, owner=user)
    for _ in range(count):
        bot = await make_bot(session, owner=user, strategy=strategy, symbol=symbol)
        for quantity in ("0.2", "0.1"):
            await place(
                session,
                settings,
                user,
                symbol=symbol.name,
                quantity=Decimal(quantity),
                bot_id=bot.id,
            )


async def _statements(
    gql: Execute, engine: AsyncEngine, user: User, query: str, first: int
) -> tuple[int, dict[str, Any]]:
    # Once before counting: process-wide memos (symbol names) fill on a first sight.
    data(await gql(query, {"first": first}, user=user))
    with count_statements(engine) as statements:
        result = data(await gql(query, {"first": first}, user=user))
    return len(statements), result


async def test_a_nested_bots_page_costs_the_same_for_5_bots_and_50(
    gql: Execute, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    small, symbol = await make_trader(session, price="100")
    await _bots_that_traded(session, settings, small, symbol, 5)
    large = await make_user(session)
    await _bots_that_traded(session, settings, large, symbol, 50)

    few, few_result = await _statements(gql, engine, small, NESTED, 50)
    many, many_result = await _statements(gql, engine, large, NESTED, 50)
    bots = many_result["bots"]["nodes"]
    assert len(few_result["bots"]["nodes"]) == 5
    assert len(bots) == 50
    assert all(len(bot["orders"]) == 2 and len(bot["trades"]) == 2 for bot in bots)
    assert all(order["bot"]["id"] == bot["id"] for bot in bots for order in bot["orders"])
    assert all(bot["positions"][0]["quantity"] == "0.3" for bot in bots)
    assert many == few, f"{few} statements for 5 bots, {many} for 50"


async def test_an_orders_page_costs_the_same_for_5_orders_and_100(
    gql: Execute, engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session, price="100")
    await _bots_that_traded(session, settings, user, symbol, 50)
    few, _ = await _statements(gql, engine, user, ORDERS, 5)
    many, result = await _statements(gql, engine, user, ORDERS, 100)
    assert len(result["orders"]["nodes"]) == 100
    assert many == few, f"{few} statements for 5 orders, {many} for 100"
