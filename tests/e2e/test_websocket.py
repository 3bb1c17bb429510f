"""Subscriptions over WebSocket: authentication at connection time, both protocols, replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.e2e.client import (
    CHANGE_PASSWORD,
    LOGOUT,
    UPDATE_PROFILE,
    GraphQLClient,
    Tokens,
    error_code,
)
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")
ACCOUNT_UPDATES = "subscription AccountUpdates { accountUpdates { id displayName } }"
START = {"id": "1", "type": "start", "payload": {"query": ACCOUNT_UPDATES}}
TIMEOUT = 5.0
# Subscribing is not acknowledged by either protocol, so updates are retried until one lands.
RETRY_EVERY = 0.5

JSON = dict[str, Any]


async def receive(ws: ClientConnection, seconds: float = TIMEOUT) -> JSON:
    """The next protocol message, skipping keep-alives."""
    while True:
        message: JSON = json.loads(await asyncio.wait_for(ws.recv(), seconds))
        if message["type"] not in ("ka", "ping", "pong"):
            return message


@contextlib.asynccontextmanager
async def open_socket(
    server: Server, protocol: Subprotocol, payload: JSON | None
) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url, subprotocols=[protocol], open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == protocol
        init: JSON = {"type": "connection_init"}
        if payload is not None:
            init["payload"] = payload
        await ws.send(json.dumps(init))
        yield ws


async def until_closed(ws: ClientConnection) -> tuple[list[JSON], int | None]:
    """Every message up to the server's close, and the close code."""
    messages: list[JSON] = []
    try:
        while True:
            messages.append(await receive(ws))
    except ConnectionClosed as closed:
        return messages, closed.rcvd.code if closed.rcvd else None


def bearer(tokens: Tokens) -> JSON:
    return {"Authorization": f"Bearer {tokens.access}"}


async def await_update(
    ws: ClientConnection, update: Callable[[str], Awaitable[None]], *, data_type: str
) -> JSON:
    """Rename until the subscription reports a rename; returns that payload's `accountUpdates`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    names: list[str] = []
    while loop.time() < deadline:
        names.append(f"Trader {uuid.uuid4().hex[:8]}")
        await update(names[-1])
        try:
            message = await receive(ws, RETRY_EVERY)
        except TimeoutError:
            continue
        assert message["type"] == data_type, message
        assert "errors" not in message["payload"], message
        received: JSON = message["payload"]["data"]["accountUpdates"]
        assert received["displayName"] in names
        return received
    pytest.fail(f"no {data_type} message within {TIMEOUT} s after {len(names)} renames")


def renamer(api: GraphQLClient, tokens: Tokens) -> Callable[[str], Awaitable[None]]:
    async def rename(name: str) -> None:
        await api.data(UPDATE_PROFILE, {"name": name}, token=tokens.access)

    return rename


@contextlib.asynccontextmanager
async def live_account_updates(
    server: Server, api: GraphQLClient, tokens: Tokens
) -> AsyncIterator[ClientConnection]:
    """A connection signed in with `tokens` whose `accountUpdates` has delivered an update."""
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))
        await await_update(ws, renamer(api, tokens), data_type="next")
        yield ws


def updates_and_refusals(messages: list[JSON]) -> tuple[list[str], list[str]]:
    """The display names `accountUpdates` delivered in `messages`, and the codes of the errors
    among them."""
    names: list[str] = []
    codes: list[str] = []
    for message in messages:
        payload = message.get("payload")
        errors = payload if isinstance(payload, list) else (payload or {}).get("errors") or []
        codes.extend(error["extensions"]["code"] for error in errors)
        if message["type"] == "next" and not errors:
            names.append(message["payload"]["data"]["accountUpdates"]["displayName"])
    return names, codes


async def refused_at_connection(server: Server, tokens: Tokens) -> None:
    """A new connection with the token is closed with 4403 before anything runs."""
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        subscribe = {"id": "2", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))
        messages, code = await until_closed(ws)
    assert (messages, code) == ([], 4403)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["no-payload", "no-token", "bad-token", "wrong-scheme", "empty-token"],
)
async def test_connection_without_a_valid_token_is_closed_4403(
    server: Server, payload: JSON | None
) -> None:
    async with open_socket(server, TRANSPORT_WS, payload) as ws:
        # Sent at once, before the server answered the init: it must never run.
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))
        messages, code = await until_closed(ws)
        assert messages == []
        assert code == 4403


async def test_account_updates_over_graphql_transport_ws(
    server: Server, api: GraphQLClient
) -> None:
    account, tokens = await api.signed_up()
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        subscribe = {"id": "sub-1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))

        update = await await_update(ws, renamer(api, tokens), data_type="next")
        assert update["id"] == account.id

        # A settled round: the latest name arrives, on the subscription's id (a late echo of
        # an earlier rename may come first).
        await renamer(api, tokens)("Final Name")
        message = await receive(ws)
        while message["payload"]["data"]["accountUpdates"]["displayName"] != "Final Name":
            message = await receive(ws)
        assert message["id"] == "sub-1"
        assert message["type"] == "next"


async def test_account_updates_over_legacy_graphql_ws(server: Server, api: GraphQLClient) -> None:
    account, tokens = await api.signed_up()
    async with open_socket(server, LEGACY_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(json.dumps(START))

        update = await await_update(ws, renamer(api, tokens), data_type="data")
        assert update["id"] == account.id

        await ws.send(json.dumps({"id": "1", "type": "stop"}))
        assert await receive(ws) == {"type": "complete", "id": "1"}


async def test_legacy_graphql_ws_without_a_token_is_refused(server: Server) -> None:
    async with open_socket(server, LEGACY_WS, {}) as ws:
        await ws.send(json.dumps(START))
        # The legacy protocol has no close code for this: an error message, then the close.
        messages, code = await until_closed(ws)
        assert [message["type"] for message in messages] == ["connection_error"]
        assert code is not None


async def test_one_user_does_not_see_another_users_updates(
    server: Server, api: GraphQLClient
) -> None:
    account, tokens = await api.signed_up()
    _, stranger = await api.signed_up()
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
        await ws.send(json.dumps(subscribe))
        await await_update(ws, renamer(api, tokens), data_type="next")

        await renamer(api, stranger)("Somebody Else")
        await renamer(api, tokens)("Myself")
        update = (await receive(ws))["payload"]["data"]["accountUpdates"]

        assert update == {"id": account.id, "displayName": "Myself"}


async def test_open_connections_are_counted_in_metrics(
    server: Server, api: GraphQLClient, http: httpx.AsyncClient
) -> None:
    _, tokens = await api.signed_up()
    async with open_socket(server, TRANSPORT_WS, bearer(tokens)) as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        metrics = (await http.get("/metrics")).text
        gauge = next(
            line
            for line in metrics.splitlines()
            if line.startswith("tradegraph_websocket_connections ")
        )
        assert float(gauge.split()[1]) >= 1


async def test_updates_fan_out_across_replicas(
    production_server: Server, production_replica: Server
) -> None:
    """Subscribed on replica A, renamed through replica B: Redis carries the event across."""
    async with (
        httpx.AsyncClient(base_url=production_server.base_url, timeout=10.0) as http_a,
        httpx.AsyncClient(base_url=production_replica.base_url, timeout=10.0) as http_b,
    ):
        api_a, api_b = GraphQLClient(http_a), GraphQLClient(http_b)
        account, tokens = await api_a.signed_up()
        async with open_socket(production_server, TRANSPORT_WS, bearer(tokens)) as ws:
            assert (await receive(ws))["type"] == "connection_ack"
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": ACCOUNT_UPDATES}}
            await ws.send(json.dumps(subscribe))

            update = await await_update(ws, renamer(api_b, tokens), data_type="next")

            assert update["id"] == account.id


async def test_logout_closes_the_sessions_open_connection(
    server: Server, api: GraphQLClient
) -> None:
    account, ended = await api.signed_up()
    kept = await api.login(account)
    async with live_account_updates(server, api, ended) as ws:
        assert (await api.data(LOGOUT, {"token": ended.refresh}))["logout"] is True
        # A change after the logout, made through the session that goes on: not delivered.
        await renamer(api, kept)("After Logout")
        messages, code = await until_closed(ws)

    assert code == 4403
    names, codes = updates_and_refusals(messages)
    assert "After Logout" not in names
    assert set(codes) <= {"UNAUTHENTICATED"}, messages
    await refused_at_connection(server, ended)
    async with live_account_updates(server, api, kept):
        pass  # the other session still connects


async def test_a_reused_refresh_token_closes_its_sessions_connections(
    server: Server, api: GraphQLClient
) -> None:
    _, first = await api.signed_up()
    rotated = (await api.refresh(first.refresh))["data"]["refreshToken"]
    newest = Tokens(access=rotated["accessToken"], refresh=rotated["refreshToken"])
    async with (
        live_account_updates(server, api, first) as old_ws,
        live_account_updates(server, api, newest) as new_ws,
    ):
        assert error_code(await api.refresh(first.refresh)) == "UNAUTHENTICATED"
        closed = [await until_closed(ws) for ws in (old_ws, new_ws)]

    assert [code for _, code in closed] == [4403, 4403]
    await refused_at_connection(server, newest)


async def test_a_new_password_closes_the_other_sessions_connections_only(
    server: Server, api: GraphQLClient
) -> None:
    account, current = await api.signed_up()
    other = await api.login(account)
    async with (
        live_account_updates(server, api, current) as kept_ws,
        live_account_updates(server, api, other) as other_ws,
    ):
        change = {"current": account.password, "new": "a-brand-new-password"}
        await api.data(CHANGE_PASSWORD, change, token=current.access)
        _, code = await until_closed(other_ws)
        assert code == 4403
        # The current session's connection goes on delivering.
        await renamer(api, current)("Still Here")
        names: list[str] = []
        while "Still Here" not in names:
            names += updates_and_refusals([await receive(kept_ws)])[0]


async def test_logout_through_one_replica_closes_the_connection_on_the_other(
    production_server: Server, production_replica: Server
) -> None:
    async with (
        httpx.AsyncClient(base_url=production_server.base_url, timeout=10.0) as http_a,
        httpx.AsyncClient(base_url=production_replica.base_url, timeout=10.0) as http_b,
    ):
        api_a, api_b = GraphQLClient(http_a), GraphQLClient(http_b)
        _, tokens = await api_a.signed_up()
        async with live_account_updates(production_server, api_a, tokens) as ws:
            await api_b.data(LOGOUT, {"token": tokens.refresh})
            _, code = await until_closed(ws)

    assert code == 4403
