"""An `orderUpdates` feed as a resuming client holds it: each update with its `feedCursor`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.client import GraphQLClient
from tests.e2e.test_websocket import receive

WAIT_SECONDS = 30.0
FEED = """subscription($after: String) {
  orderUpdates(after: $after) { id status feedCursor } }"""
RESTING = """mutation { placeOrder(input: {symbol: "BTC-USD", side: BUY, type: LIMIT,
  quantity: "0.001", price: "10000"}) { id } }"""
JSON = dict[str, Any]


async def place_resting(api: GraphQLClient, token: str) -> str:
    placed: str = (await api.data(RESTING, token=token))["placeOrder"]["id"]
    return placed


async def subscribe(ws: ClientConnection, after: str | None = None) -> None:
    """Once the connection is acknowledged, subscribe to the feed (after `after`)."""
    assert (await receive(ws))["type"] == "connection_ack"
    payload = {"query": FEED, "variables": {"after": after}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))


async def next_update(ws: ClientConnection) -> JSON:
    message = await receive(ws, WAIT_SECONDS)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    update: JSON = message["payload"]["data"]["orderUpdates"]
    return update


async def update_for(ws: ClientConnection, order_id: str) -> JSON:
    while (update := await next_update(ws))["id"] != order_id:
        pass
    return update


async def live(ws: ClientConnection, api: GraphQLClient, token: str) -> JSON:
    """Place orders until the feed delivers (subscribing is not acknowledged), then one more:
    its update is the feed's last event."""
    for _ in range(int(WAIT_SECONDS / 0.5)):
        await place_resting(api, token)
        try:
            await asyncio.wait_for(receive(ws), 0.5)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail(f"no order update within {WAIT_SECONDS} s")
    return await update_for(ws, await place_resting(api, token))


def cursor_number(cursor: str) -> int:
    topic, _, number = cursor.partition(":")
    assert topic == "orders"
    return int(number)
