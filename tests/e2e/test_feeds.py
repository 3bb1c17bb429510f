"""Live order, trade and position feeds over a real WebSocket, fed by orders placed over HTTP.

One connection holds the three subscriptions; a market order placed over HTTP must reach it
as its order update, its trade and the position change, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import update

from app import security
from app.db import make_engine, make_session_factory, utcnow
from app.events import user_channel
from app.outbox.models import OutboxEvent
from tests.conftest import REDIS_URL, kill_pubsub_connections, test_settings
from tests.e2e import resume
from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server
from tests.e2e.test_websocket import (
    ACCOUNT_UPDATES,
    LEGACY_WS,
    TRANSPORT_WS,
    bearer,
    open_socket,
    receive,
    until_closed,
)

FEEDS = {
    "1": "subscription { orderUpdates { id status side filledQuantity } }",
    "2": "subscription { tradeExecutions { id quantity order { id } } }",
    "3": "subscription { positionUpdates { symbol quantity } }",
}
BUY = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: MARKET,
  quantity: "0.001"}) { id } }"""
WAIT_SECONDS = 30.0


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    # A short subscription queue, so that a burst of events outruns one subscriber.
    return {"TG_MARKET_TICK_SECONDS": "1", "TG_SUBSCRIPTION_QUEUE": "5"}


async def _priced(api: GraphQLClient, token: str) -> None:
    """Wait for the simulated market's first BTC-USD price (market orders need one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        ticker = await api.data('{ ticker(symbol: "BTC-USD") { price } }', token=token)
        if ticker["ticker"] is not None:
            return
        await asyncio.sleep(0.2)
    pytest.fail("the simulated market set no price")


async def _next(ws: Any) -> tuple[str, dict[str, Any]]:
    message = await receive(ws)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    field, value = next(iter(message["payload"]["data"].items()))
    return field, value


async def test_a_fill_arrives_as_order_trade_and_position_in_order(
    market: Server, api: GraphQLClient
) -> None:
    _, tokens = await api.signed_up()
    await _priced(api, tokens.access)
    async with open_socket(market, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        for key, query in FEEDS.items():
            await ws.send(json.dumps({"id": key, "type": "subscribe", "payload": {"query": query}}))
        # Subscribing is not acknowledged: buy until a first update shows the feeds are live.
        while True:
            await api.data(BUY, token=tokens.access)
            try:
                await asyncio.wait_for(receive(ws), 0.5)
                break
            except TimeoutError:
                continue
        placed = (await api.data(BUY, token=tokens.access))["placeOrder"]["id"]
        # Earlier buys' messages may still be on the way; this buy's come in one run.
        while (update := await _next(ws)) != (
            "orderUpdates",
            {"id": placed, "status": "FILLED", "side": "BUY", "filledQuantity": "0.001"},
        ):
            pass
        field, trade = await _next(ws)
        assert (field, trade["order"]["id"], trade["quantity"]) == (
            "tradeExecutions",
            placed,
            "0.001",
        )
        field, position = await _next(ws)
        assert field == "positionUpdates"
        assert position["symbol"] == "BTC-USD"
        assert update[0] == "orderUpdates"


PRICES = 'subscription Prices { marketData(symbol: "BTC-USD") { symbol price updatedAt } }'


async def test_market_data_reaches_both_protocols_alike(market: Server, api: GraphQLClient) -> None:
    """Both connections join one shared execution; each gets the tick in its own protocol's
    message, around the same payload."""
    _, tokens = await api.signed_up()
    async with (
        open_socket(market, TRANSPORT_WS, bearer(tokens)) as modern,
        open_socket(market, LEGACY_WS, bearer(tokens)) as legacy,
    ):
        assert (await receive(modern))["type"] == "connection_ack"
        assert (await receive(legacy))["type"] == "connection_ack"
        await modern.send(
            json.dumps({"id": "p", "type": "subscribe", "payload": {"query": PRICES}})
        )
        await legacy.send(json.dumps({"id": "q", "type": "start", "payload": {"query": PRICES}}))
        ticks: dict[str, dict[str, Any]] = {"p": {}, "q": {}}
        for _ in range(3):
            for ws in (modern, legacy):
                message = await receive(ws, WAIT_SECONDS)
                assert (message["id"], message["type"]) in {("p", "next"), ("q", "data")}
                tick = message["payload"]["data"]["marketData"]
                ticks[message["id"]][tick["updatedAt"]] = message["payload"]
    common = ticks["p"].keys() & ticks["q"].keys()
    assert common  # the same ticks reached both
    for at in common:
        assert ticks["p"][at] == ticks["q"][at]
        assert ticks["p"][at]["data"]["marketData"]["symbol"] == "BTC-USD"


async def test_a_connection_ends_with_its_access_token(server: Server, api: GraphQLClient) -> None:
    account, tokens = await api.signed_up()
    # A token of the server's own kind, for the open login session, that has two seconds left.
    settings = test_settings(access_token_minutes=5)
    session_id = security.decode_access_token(settings, tokens.access).session_id
    issued = utcnow() - timedelta(minutes=5) + timedelta(seconds=2)
    token = security.create_access_token(
        settings, user_id=int(account.id), role="user", session_id=session_id, now=issued
    )
    async with open_socket(server, TRANSPORT_WS, {"Authorization": f"Bearer {token}"}) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))
        messages, code = await until_closed(ws)
    assert code == 4403
    assert messages == []


async def test_a_subscriber_that_falls_behind_is_closed_not_skipped(
    embedded_server: Server,
) -> None:
    """Embedded, where one transaction's events reach the queues in one burst. Through Redis
    they trickle in as the reader takes them, and whether a subscriber falls behind is a race;
    the overflow itself is the same code, tested on Redis in tests/app/test_broker.py."""
    async with httpx.AsyncClient(base_url=embedded_server.base_url, timeout=10.0) as http:
        await _falls_behind(embedded_server, GraphQLClient(http))


async def _falls_behind(server: Server, api: GraphQLClient) -> None:
    _, tokens = await api.signed_up()
    resting = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: LIMIT,
      quantity: "0.001", price: "10000"}) { id } }"""
    for _ in range(40):
        await api.data(resting, token=tokens.access)
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": FEEDS["1"]}}
        await ws.send(json.dumps(subscribe))
        # Live once one order's update arrives; then one transaction cancels 41 orders at once.
        while True:
            await api.data(resting, token=tokens.access)
            try:
                await asyncio.wait_for(receive(ws), 0.5)
                break
            except TimeoutError:
                continue
        await api.data("mutation { cancelAllOrders { id } }", token=tokens.access)
        messages, code = await until_closed(ws)
    assert code == 4001
    assert len(messages) < 41  # it was closed rather than handed a gap


RESTING = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: LIMIT,
  quantity: "0.001", price: "10000"}) { id } }"""


async def _live(ws: Any, api: GraphQLClient, token: str) -> str:
    """Place resting orders until one's update arrives; returns the id of one placed after."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        await api.data(RESTING, token=token)
        try:
            await asyncio.wait_for(receive(ws), 0.5)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail(f"no order update within {WAIT_SECONDS} s")
    placed: str = (await api.data(RESTING, token=token))["placeOrder"]["id"]
    return placed


async def _update_for(ws: Any, order_id: str) -> dict[str, Any]:
    while True:
        field, update = await _next(ws)
        if field == "orderUpdates" and update["id"] == order_id:
            return update


@contextlib.asynccontextmanager
async def order_feed(
    http_server: Server, ws_server: Server
) -> AsyncIterator[tuple[GraphQLClient, str, Any]]:
    """A new user, an HTTP client on one server and an `orderUpdates` feed on another."""
    async with httpx.AsyncClient(base_url=http_server.base_url, timeout=10.0) as http:
        api = GraphQLClient(http)
        _, tokens = await api.signed_up()
        async with open_socket(ws_server, TRANSPORT_WS, bearer(tokens)) as ws:
            assert (await receive(ws))["type"] == "connection_ack"
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": FEEDS["1"]}}
            await ws.send(json.dumps(subscribe))
            yield api, tokens.access, ws


async def test_two_users_subscribed_at_once_get_only_their_own_orders(server: Server) -> None:
    async with (
        order_feed(server, server) as (api, mine, ws),
        order_feed(server, server) as (other_api, theirs, other_ws),
    ):
        # Both feeds live, then each user places one more order.
        await _live(ws, api, mine)
        await _live(other_ws, other_api, theirs)
        their_last = (await other_api.data(RESTING, token=theirs))["placeOrder"]["id"]
        my_last = (await api.data(RESTING, token=mine))["placeOrder"]["id"]
        seen = [(await _next(ws))[1]["id"]]
        while seen[-1] != my_last:
            seen.append((await _next(ws))[1]["id"])
        assert (await _update_for(other_ws, their_last))["status"] == "OPEN"
        query = "{ orders(first: 100) { nodes { id } } }"
        own = {o["id"] for o in (await api.data(query, token=mine))["orders"]["nodes"]}
        others = {o["id"] for o in (await other_api.data(query, token=theirs))["orders"]["nodes"]}
    assert set(seen) <= own
    assert not set(seen) & others


async def test_an_order_placed_through_one_replica_reaches_a_feed_on_the_other(
    production_server: Server, production_replica: Server
) -> None:
    async with order_feed(production_server, production_replica) as (api, token, ws):
        placed = await _live(ws, api, token)
        assert (await _update_for(ws, placed))["status"] == "OPEN"


async def _kill_pubsub_connections() -> None:
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await kill_pubsub_connections(redis) >= 1
    finally:
        await redis.aclose()


async def test_feeds_go_on_after_redis_drops_the_connection(production_server: Server) -> None:
    async with order_feed(production_server, production_server) as (api, token, ws):
        await _update_for(ws, await _live(ws, api, token))
        me = await api.data("{ me { id } }", token=token)
        channel = f"user:{me['me']['id']}:orders"
        await _kill_pubsub_connections()
        # The server reconnects and subscribes again; nothing was published meanwhile, so the
        # same feed goes on with the orders placed from then on.
        redis = aioredis.Redis.from_url(REDIS_URL)
        try:
            for _ in range(200):
                if dict(await redis.pubsub_numsub(channel))[channel.encode()] == 1:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the server did not subscribe again")
        finally:
            await redis.aclose()
        placed = (await api.data(RESTING, token=token))["placeOrder"]["id"]
        assert (await _update_for(ws, placed))["status"] == "OPEN"


async def test_a_feed_that_missed_events_while_redis_was_away_reads_them_from_the_outbox(
    production_server: Server,
) -> None:
    async with order_feed(production_server, production_server) as (api, token, ws):
        await _update_for(ws, await _live(ws, api, token))
        await _kill_pubsub_connections()
        # Placed while the server waits to reconnect (half a second): pub/sub loses its
        # update, and the feed, back, finds it in the outbox; then the next one, live.
        lost = (await api.data(RESTING, token=token))["placeOrder"]["id"]
        assert (await _next(ws))[1]["id"] == lost
        later = (await api.data(RESTING, token=token))["placeOrder"]["id"]
        assert (await _next(ws))[1]["id"] == later


async def test_a_resumed_feed_gets_exactly_what_it_missed_in_order_then_live_updates(
    server: Server, api: GraphQLClient
) -> None:
    _, tokens = await api.signed_up()
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        await resume.subscribe(ws)
        last = await resume.live(ws, api, tokens.access)
    # Disconnected: three orders are placed meanwhile.
    missed = [await resume.place_resting(api, tokens.access) for _ in range(3)]
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        await resume.subscribe(ws, after=last["feedCursor"])
        replayed = [await resume.next_update(ws) for _ in missed]
        latest = await resume.place_resting(api, tokens.access)
        following = await resume.next_update(ws)
    seen = resume.cursor_number(last["feedCursor"])
    assert [(u["id"], u["status"]) for u in replayed] == [(id, "OPEN") for id in missed]
    numbers = [resume.cursor_number(u["feedCursor"]) for u in replayed]
    assert numbers == [seen + 1, seen + 2, seen + 3]
    # Live from there on: no event twice, none skipped.
    assert (following["id"], resume.cursor_number(following["feedCursor"])) == (latest, seen + 4)


async def test_a_resume_past_the_retention_window_closes_with_4002(
    server: Server, api: GraphQLClient
) -> None:
    account, tokens = await api.signed_up()
    await resume.place_resting(api, tokens.access)
    # The order was placed two hours ago, as far as the outbox knows (its window is one hour).
    channel = user_channel(int(account.id), "orders")
    two_hours_ago = utcnow() - timedelta(hours=2)
    engine = make_engine(server.env["TG_DATABASE_URL"])
    try:
        async with make_session_factory(engine)() as session:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.channel == channel)
                .values(created_at=two_hours_ago)
            )
            await session.commit()
    finally:
        await engine.dispose()
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        await resume.subscribe(ws, after="orders:0")  # from the feed's very first event
        messages, code = await until_closed(ws)
    assert (code, messages) == (4002, [])
