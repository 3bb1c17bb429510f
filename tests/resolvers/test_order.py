"""Orders, trades, positions and the portfolio through the real schema, on both databases."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.order.accounting import Side
from app.order.models import Order, Position, Trade
from app.runtime import Runtime
from app.user.models import User
from tests.conftest import Execute
from tests.factories import (
    data,
    error_codes,
    error_field,
    make_bot,
    make_trader,
    place,
    set_price,
)

ORDER = """id symbol side type status quantity price filledQuantity remainingQuantity
  averageFillPrice fees rejectReason clientOrderId trades { id price quantity fee }"""
PLACE = f"mutation($input: PlaceOrderInput!) {{ placeOrder(input: $input) {{ {ORDER} }} }}"
GET = f"query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}"
ORDERS = """query($status: OrderStatus, $symbol: String, $after: String) {
  orders(status: $status, symbol: $symbol, first: 2, after: $after) {
    nodes { id status } pageInfo { hasNextPage endCursor } } }"""
PORTFOLIO = """{ portfolio { currency balance reserved available equity exposure
  unrealizedPnl realizedPnl totalPnl pnlToday } }"""
POSITIONS = """query($flat: Boolean) { positions(includeFlat: $flat) {
  symbol quantity averagePrice realizedPnl markPrice marketValue unrealizedPnl } }"""


async def _place(gql: Execute, user: User, **values: Any) -> Any:
    order = {"side": "BUY", "type": "MARKET", "quantity": "1", **values}
    return await gql(PLACE, {"input": order}, user=user)


async def _orders_written(session: AsyncSession, user: User) -> int:
    return await session.scalar(select(func.count()).where(Order.owner_id == user.id)) or 0


async def test_a_market_buy_fills_and_every_view_agrees(
    gql: Execute, session: AsyncSession
) -> None:
    user, symbol = await make_trader(session, price="100")
    # Settings: 5 bps slippage, 0.1% fee: the buy fills at 100.05 and pays 0.10005.
    order = data(await _place(gql, user, symbol=symbol.name, quantity="2"))["placeOrder"]
    assert order["status"] == "FILLED"
    assert (order["symbol"], order["filledQuantity"], order["remainingQuantity"]) == (
        symbol.name,
        "2",
        "0",
    )
    assert order["averageFillPrice"] == "100.05"
    assert order["fees"] == "0.2001"
    assert [(t["quantity"], t["price"], t["fee"]) for t in order["trades"]] == [
        ("2", "100.05", "0.2001")
    ]
    positions = data(await gql(POSITIONS, user=user))["positions"]
    assert positions == [
        {
            "symbol": symbol.name,
            "quantity": "2",
            "averagePrice": "100.05",
            "realizedPnl": "-0.2001",
            "markPrice": "100",
            "marketValue": "200",
            "unrealizedPnl": "-0.1",
        }
    ]
    portfolio = data(await gql(PORTFOLIO, user=user))["portfolio"]
    # 10000 - 2 x 100.05 - 0.2001 = 9799.6999; equity adds the position at 100.
    assert portfolio == {
        "currency": "USD",
        "balance": "9799.6999",
        "reserved": "0",
        "available": "9799.6999",
        "equity": "9999.6999",
        "exposure": "200",
        "unrealizedPnl": "-0.1",
        "realizedPnl": "-0.2001",
        "totalPnl": "-0.3001",
        "pnlToday": "-0.2001",
    }


async def test_a_new_user_has_the_starting_cash_and_nothing_else(
    gql: Execute, session: AsyncSession
) -> None:
    user, _ = await make_trader(session)
    portfolio = data(await gql(PORTFOLIO, user=user))["portfolio"]
    assert (portfolio["balance"], portfolio["equity"], portfolio["totalPnl"]) == (
        "10000",
        "10000",
        "0",
    )
    assert data(await gql(POSITIONS, user=user))["positions"] == []


async def test_bad_input_names_the_field_and_writes_nothing(
    gql: Execute, session: AsyncSession
) -> None:
    user, symbol = await make_trader(session)
    cases = [
        ({"quantity": "0.0001"}, "quantity"),  # off the 0.001 step
        ({"type": "LIMIT"}, "price"),
        ({"price": "99"}, "price"),  # a market order takes no price
        ({"type": "STOP", "stopPrice": "99.999"}, "stopPrice"),
        ({"symbol": "NOPE-USD"}, "symbol"),
    ]
    for values, field in cases:
        result = await _place(gql, user, **{"symbol": symbol.name, **values})
        assert error_codes(result) in (["BAD_USER_INPUT"], ["NOT_FOUND"]), values
        assert error_field(result) == field, values
    assert await _orders_written(session, user) == 0
    floats = await gql(
        PLACE,
        {"input": {"symbol": symbol.name, "side": "BUY", "type": "MARKET", "quantity": 1.5}},
        user=user,
    )
    assert error_codes(floats) == ["BAD_USER_INPUT"]


async def test_a_refused_order_is_kept_and_its_id_given(
    gql: Execute, session: AsyncSession
) -> None:
    user, symbol = await make_trader(session)
    result = await _place(gql, user, symbol=symbol.name, quantity="1000")
    assert error_codes(result) == ["ORDER_REJECTED"]
    assert result.errors is not None
    assert result.errors[0].extensions is not None
    order_id = result.errors[0].extensions["orderId"]
    kept = data(await gql(GET, {"id": order_id}, user=user))["order"]
    assert kept["status"] == "REJECTED"
    assert kept["rejectReason"].startswith("insufficient funds")


async def test_client_order_id_places_once(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session)
    first = data(await _place(gql, user, symbol=symbol.name, clientOrderId="abc"))["placeOrder"]
    again = data(await _place(gql, user, symbol=symbol.name, clientOrderId="abc"))["placeOrder"]
    assert again["id"] == first["id"]
    assert again["clientOrderId"] == "abc"
    assert await _orders_written(session, user) == 1


async def test_cancel_and_cancel_all(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session)
    values = {"symbol": symbol.name, "type": "LIMIT", "price": "90"}
    one = data(await _place(gql, user, **values))["placeOrder"]
    two = data(await _place(gql, user, **values))["placeOrder"]
    assert (one["status"], one["remainingQuantity"]) == ("OPEN", "1")
    cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id status } }"
    assert data(await gql(cancel, {"id": one["id"]}, user=user))["cancelOrder"]["status"] == (
        "CANCELED"
    )
    assert error_codes(await gql(cancel, {"id": one["id"]}, user=user)) == ["CONFLICT"]
    everything = data(await gql("mutation { cancelAllOrders { id status } }", user=user))
    assert everything["cancelAllOrders"] == [{"id": two["id"], "status": "CANCELED"}]
    portfolio = data(await gql(PORTFOLIO, user=user))["portfolio"]
    assert portfolio["reserved"] == "0"


async def test_orders_page_newest_first_and_filter(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session)
    filled = data(await _place(gql, user, symbol=symbol.name))["placeOrder"]
    resting = [
        data(await _place(gql, user, symbol=symbol.name, type="LIMIT", price=price))["placeOrder"]
        for price in ("90", "91")
    ]
    page = data(await gql(ORDERS, user=user))["orders"]
    assert [o["id"] for o in page["nodes"]] == [resting[1]["id"], resting[0]["id"]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = data(await gql(ORDERS, {"after": page["pageInfo"]["endCursor"]}, user=user))
    assert [o["id"] for o in rest["orders"]["nodes"]] == [filled["id"]]
    assert rest["orders"]["pageInfo"]["hasNextPage"] is False
    done = data(await gql(ORDERS, {"status": "FILLED", "symbol": symbol.name}, user=user))
    assert [o["id"] for o in done["orders"]["nodes"]] == [filled["id"]]
    trades = "query($order: ID) { trades(orderId: $order) { nodes { order { id } side } } }"
    fills = data(await gql(trades, {"order": filled["id"]}, user=user))["trades"]["nodes"]
    assert fills == [{"order": {"id": filled["id"]}, "side": "BUY"}]


async def test_close_position_sells_it_all(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session)
    data(await _place(gql, user, symbol=symbol.name, quantity="3"))
    # An open sell on the position is cancelled first: the whole position goes at market.
    data(await _place(gql, user, symbol=symbol.name, side="SELL", type="LIMIT", price="150"))
    close = "mutation($s: String!) { closePosition(symbol: $s) { side status quantity } }"
    sold = data(await gql(close, {"s": symbol.name}, user=user))["closePosition"]
    assert sold == {"side": "SELL", "status": "FILLED", "quantity": "3"}
    assert data(await gql(POSITIONS, user=user))["positions"] == []
    flat = data(await gql(POSITIONS, {"flat": True}, user=user))["positions"]
    assert [p["quantity"] for p in flat] == ["0"]
    assert error_codes(await gql(close, {"s": symbol.name}, user=user)) == ["CONFLICT"]
    open_orders = data(await gql(ORDERS, {"status": "OPEN"}, user=user))["orders"]["nodes"]
    assert open_orders == []


async def test_reset_paper_account(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session)
    data(await _place(gql, user, symbol=symbol.name, quantity="3"))
    data(await _place(gql, user, symbol=symbol.name, type="LIMIT", price="90"))
    reset = "mutation { resetPaperAccount { balance reserved equity exposure } }"
    assert data(await gql(reset, user=user))["resetPaperAccount"] == {
        "balance": "10000",
        "reserved": "0",
        "equity": "10000",
        "exposure": "0",
    }
    assert data(await gql(POSITIONS, user=user))["positions"] == []
    statuses = data(await gql(ORDERS, user=user))["orders"]["nodes"]
    assert [o["status"] for o in statuses] == ["CANCELED", "FILLED"]


async def test_amounts_stay_exact(gql: Execute, session: AsyncSession) -> None:
    user, symbol = await make_trader(session, price="0.07")
    order = data(await _place(gql, user, symbol=symbol.name, quantity="333.333"))["placeOrder"]
    # 0.07 + 5 bps = 0.070035, rounded to the 0.01 tick against the buyer: 0.08.
    assert order["averageFillPrice"] == "0.08"
    assert D(order["fees"]) == D("333.333") * D("0.08") * D("0.001")


BOT_BOOKS = """query($bot: ID!) { bot(id: $bot) { allocatedCapital
  positions { quantity averagePrice markPrice marketValue unrealizedPnl realizedPnl }
  trades(first: 1) { side price quantity fee realizedPnl } } }"""


async def test_a_nested_query_shows_values_as_a_trader_reads_them(
    gql: Execute, session: AsyncSession, settings: Settings
) -> None:
    user, symbol = await make_trader(session)
    bot = await make_bot(session, owner=user, symbol=symbol, allocated_capital=D("1000.123456789"))
    # Buys of 1 at 100, 101 and 102 fill at 100.05, 101.06 and 102.06: an average of
    # 303.17 / 3, which no number of places holds exactly.
    for last in ("100", "101", "102"):
        await set_price(session, symbol=symbol, price=last)
        await place(session, settings, user, symbol=symbol.name, bot_id=bot.id)
    # A last price off the 0.01 tick (an imported feed); the sale fills at 101.95.
    await set_price(session, symbol=symbol, price="102.0051")
    await place(session, settings, user, symbol=symbol.name, side="SELL", bot_id=bot.id)
    books = data(await gql(BOT_BOOKS, {"bot": str(bot.id)}, user=user))["bot"]
    assert books["allocatedCapital"] == "1000.12345679"
    assert books["positions"] == [
        {
            "quantity": "2",
            "averagePrice": "101.05666667",
            "markPrice": "102.01",
            "marketValue": "204.0102",
            # 2 x (102.0051 - 101.0566666...67) = 1.8968666...66
            "unrealizedPnl": "1.89686667",
            # -0.30317 of buying fees, then 1 x (101.95 - 101.0566666...67) - 0.10195
            "realizedPnl": "0.48821333",
        }
    ]
    assert books["trades"] == [
        {
            "side": "SELL",
            "price": "101.95",
            "quantity": "1",
            "fee": "0.10195",
            "realizedPnl": "0.79138333",
        }
    ]
    # What is stored keeps every place: only what is shown is rounded.
    average, realized = (
        await session.execute(
            select(Position.average_price, Position.realized_pnl).where(Position.bot_key == bot.id)
        )
    ).one()
    sold = await session.scalar(
        select(Trade.realized_pnl).where(Trade.bot_id == bot.id, Trade.side == Side.SELL)
    )
    entry = D("303.17") / 3
    assert abs(average - entry) < D("1e-17")
    assert sold is not None
    assert abs(sold - (D("101.95") - entry - D("0.10195"))) < D("1e-17")
    assert realized == sold - D("0.30317")


async def test_an_order_stored_off_its_grid_is_shown_on_it(
    gql: Execute, session: AsyncSession
) -> None:
    user, symbol = await make_trader(session)
    resting = data(await _place(gql, user, symbol=symbol.name, type="LIMIT", price="90"))
    order_id = int(resting["placeOrder"]["id"])
    # Rows as the ledger may leave them: an average of fills to 18 places, amounts written
    # by an older version or an import, off the 0.01 tick and the 0.001 step.
    stored = {
        "price": D("90.004999999999999999"),
        "quantity": D("1.0004"),
        "filled_quantity": D("0.333333333333333333"),
        "average_fill_price": D("59535.578181818181818182"),
    }
    await session.execute(update(Order).where(Order.id == order_id).values(**stored))
    order = data(await gql(GET, {"id": str(order_id)}, user=user))["order"]
    assert (order["price"], order["quantity"]) == ("90", "1")
    assert (order["filledQuantity"], order["remainingQuantity"]) == ("0.333", "0.667")
    assert order["averageFillPrice"] == "59535.57818182"
    kept = await session.scalar(select(Order.average_fill_price).where(Order.id == order_id))
    assert kept == stored["average_fill_price"]


async def test_rows_show_the_same_before_and_after_their_symbol_is_known(
    gql: Execute, session: AsyncSession, settings: Settings, runtime: Runtime
) -> None:
    user, symbol = await make_trader(session)
    order = await place(session, settings, user, symbol=symbol.name, quantity=D(2))
    # The first answer reads the symbol (its fields wait for it), later ones find it known.
    assert symbol.id not in runtime.symbols
    first = data(await gql(GET, {"id": str(order.id)}, user=user))["order"]
    assert runtime.symbols[symbol.id].price_tick == symbol.price_tick
    again = data(await gql(GET, {"id": str(order.id)}, user=user))["order"]
    assert first == again
    assert (first["symbol"], first["quantity"], first["averageFillPrice"]) == (
        symbol.name,
        "2",
        "100.05",
    )
    assert first["trades"][0]["price"] == "100.05"
