"""A user's whole trading day over HTTP: a strategy, a bot, the simulated market, the books.

The market runs at 60x (a 1m candle closes every second) so that a bot on 1m candles trades
within seconds; in production mode a real `tradegraph worker` process runs the market and the
bot, in embedded mode the API process does. Once the bot has bought, it is stopped with its
position closed, and orders, trades, positions and the portfolio must agree to the cent.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from app.order.accounting import PLACES
from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server

WAIT_SECONDS = 90.0
START = Decimal(10000)

BOOKS = """query($bot: ID!) {
  bot(id: $bot) { status errorReason allocatedCapital
    positions { symbol quantity averagePrice realizedPnl } }
  orders(botId: $bot, first: 200) { nodes { id side status quantity filledQuantity
    averageFillPrice fees bot { id } trades { id quantity price fee } } }
  trades(botId: $bot, first: 200) { nodes { id side quantity price fee realizedPnl
    order { id } } }
  positions(includeFlat: true) { symbol quantity realizedPnl bot { id } }
  portfolio { balance reserved equity exposure realizedPnl unrealizedPnl totalPnl }
}"""


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return {"TG_MARKET_TICK_SECONDS": "1", "TG_MARKET_SPEED": "60"}


async def _bot_that_runs(api: GraphQLClient, token: str) -> str:
    strategy = await api.data(
        """mutation { createStrategy(input: {name: "Quick cross", kind: SMA_CROSSOVER,
        parameters: {fast: 2, slow: 3}}) { id } }""",
        token=token,
    )
    bot = await api.data(
        """mutation($strategy: ID!) { createBot(input: {name: "Runner", strategyId: $strategy,
        symbol: "BTC-USD", timeframe: M1, allocatedCapital: "2500"}) { id status } }""",
        {"strategy": strategy["createStrategy"]["id"]},
        token=token,
    )
    bot_id: str = bot["createBot"]["id"]
    started = await api.data(
        "mutation($id: ID!) { startBot(id: $id) { status } }", {"id": bot_id}, token=token
    )
    assert started["startBot"]["status"] == "RUNNING"
    return bot_id


async def _wait_for_a_buy(api: GraphQLClient, token: str, bot_id: str) -> None:
    query = (
        """query($bot: ID!) { bot(id: $bot) { status errorReason trades(first: 1) { side } } }"""
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        bot = (await api.data(query, {"bot": bot_id}, token=token))["bot"]
        assert bot["status"] == "RUNNING", bot["errorReason"]
        if bot["trades"]:
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"the bot did not trade within {WAIT_SECONDS} s of simulated market")


def _sum(rows: list[dict[str, Any]], key: str) -> Decimal:
    return sum((Decimal(row[key]) for row in rows), Decimal(0))


def _check_books(books: dict[str, Any], bot_id: str) -> None:
    orders = books["orders"]["nodes"]
    trades = books["trades"]["nodes"]
    assert {o["bot"]["id"] for o in orders} == {bot_id}
    # Every order's totals are its trades'.
    for order in orders:
        fills = order["trades"]
        assert Decimal(order["filledQuantity"]) == _sum(fills, "quantity")
        assert Decimal(order["fees"]) == _sum(fills, "fee")
        if fills:
            paid = sum(Decimal(f["quantity"]) * Decimal(f["price"]) for f in fills)
            average = (paid / _sum(fills, "quantity")).quantize(PLACES)
            assert Decimal(order["averageFillPrice"]) == average
    assert sorted(t["id"] for o in orders for t in o["trades"]) == sorted(t["id"] for t in trades)
    # The position is flat: what was bought was sold.
    bought = _sum([t for t in trades if t["side"] == "BUY"], "quantity")
    sold = _sum([t for t in trades if t["side"] == "SELL"], "quantity")
    assert bought == sold > 0
    (position,) = books["bot"]["positions"]
    assert Decimal(position["quantity"]) == 0
    realized = _sum(trades, "realizedPnl")
    assert Decimal(position["realizedPnl"]) == realized
    # Cash: every buy paid price and fee, every sell received price less fee.
    cash = START
    for trade in trades:
        value = Decimal(trade["quantity"]) * Decimal(trade["price"])
        sign = -1 if trade["side"] == "BUY" else 1
        cash += sign * value - Decimal(trade["fee"])
    portfolio = books["portfolio"]
    assert Decimal(portfolio["balance"]) == cash
    # Flat, so the realised PnL is all the account gained or lost, fees included.
    assert Decimal(portfolio["balance"]) - START == realized == Decimal(portfolio["realizedPnl"])
    assert Decimal(portfolio["equity"]) == Decimal(portfolio["balance"])
    assert (portfolio["exposure"], portfolio["unrealizedPnl"], portfolio["reserved"]) == (
        "0",
        "0",
        "0",
    )
    assert Decimal(portfolio["totalPnl"]) == realized


async def test_a_bot_trades_on_the_simulated_market_and_the_books_agree(
    market: Server, api: GraphQLClient
) -> None:
    _, tokens = await api.signed_up()
    token = tokens.access
    bot_id = await _bot_that_runs(api, token)
    await _wait_for_a_buy(api, token, bot_id)
    stopped = await api.data(
        "mutation($id: ID!) { stopBot(id: $id, closePosition: true) { status } }",
        {"id": bot_id},
        token=token,
    )
    assert stopped["stopBot"]["status"] == "STOPPED"
    books = await api.data(BOOKS, {"bot": bot_id}, token=token)
    assert books["bot"]["status"] == "STOPPED"
    _check_books(books, bot_id)
    spent = [
        Decimal(t["quantity"]) * Decimal(t["price"]) + Decimal(t["fee"])
        for t in books["trades"]["nodes"]
        if t["side"] == "BUY"
    ]
    assert max(spent) <= Decimal(books["bot"]["allocatedCapital"])
