"""Open WebSockets are capped per user and per client address: the connection past a cap is
closed with 4429 and a reason, and closing one frees its slot."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.client import GraphQLClient, Tokens
from tests.e2e.server import Server
from tests.e2e.test_websocket import TIMEOUT, TRANSPORT_WS, bearer, receive

pytestmark = pytest.mark.e2e

PER_USER, PER_ADDRESS = 2, 3


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return {
        "TG_MAX_WEBSOCKETS_PER_USER": str(PER_USER),
        "TG_MAX_WEBSOCKETS_PER_ADDRESS": str(PER_ADDRESS),
    }


@pytest.fixture
async def api(embedded_server: Server) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=embedded_server.base_url, timeout=10.0) as http:
        yield GraphQLClient(http)


async def _signed_in(server: Server, tokens: Tokens) -> ClientConnection:
    """A connection the server acknowledged; the caller closes it."""
    ws = await connect(server.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT)
    await ws.send(json.dumps({"type": "connection_init", "payload": bearer(tokens)}))
    assert (await receive(ws))["type"] == "connection_ack"
    return ws


async def _refused(server: Server, tokens: Tokens) -> tuple[int, str]:
    """The close code and reason of a connection the server turns away."""
    async with connect(server.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT) as ws:
        with contextlib.suppress(ConnectionClosed):  # closed already: refused at connecting
            await ws.send(json.dumps({"type": "connection_init", "payload": bearer(tokens)}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    frame = closed.value.rcvd
    assert frame is not None
    return frame.code, frame.reason


async def _open_connections(api: GraphQLClient, count: int) -> None:
    """Wait until the server counts `count` open connections (closing one is asynchronous)."""
    for _ in range(int(TIMEOUT / 0.05)):
        metrics = (await api.http.get("/metrics")).text
        gauge = next(
            line
            for line in metrics.splitlines()
            if line.startswith("tradegraph_websocket_connections ")
        )
        if float(gauge.split()[1]) == count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the server never counted {count} open connections")


async def test_a_user_past_the_cap_is_refused_until_a_connection_closes(
    embedded_server: Server, api: GraphQLClient
) -> None:
    _, tokens = await api.signed_up()
    first, second = [await _signed_in(embedded_server, tokens) for _ in range(PER_USER)]
    try:
        assert await _refused(embedded_server, tokens) == (
            4429,
            "too many connections for this user",
        )
        await first.close()
        await _open_connections(api, PER_USER - 1)
        third = await _signed_in(embedded_server, tokens)
        await third.close()
    finally:
        await first.close()
        await second.close()
    await _open_connections(api, 0)


async def test_an_address_past_the_cap_is_refused_before_signing_in(
    embedded_server: Server, api: GraphQLClient
) -> None:
    _, alice = await api.signed_up()
    _, bob = await api.signed_up()
    # Every client of this test connects from 127.0.0.1.
    held = [await _signed_in(embedded_server, alice) for _ in range(PER_USER)]
    held.append(await _signed_in(embedded_server, bob))
    try:
        assert await _refused(embedded_server, bob) == (
            4429,
            "too many connections from this address",
        )
        await held.pop().close()
        await _open_connections(api, PER_ADDRESS - 1)
        held.append(await _signed_in(embedded_server, bob))
    finally:
        for ws in held:
            await ws.close()
    await _open_connections(api, 0)
