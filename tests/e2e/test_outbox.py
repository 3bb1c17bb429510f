"""The outbox end to end: an event committed while Redis was away reaches a feed on another
replica although its process died before publishing it. (Resuming feeds: tests/e2e/test_feeds.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from app.broker import NUMBER_KEY
from app.db import make_engine, make_session_factory
from app.events import user_channel
from app.outbox.models import OutboxEvent
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.e2e.client import GraphQLClient
from tests.e2e.faults import RedisServer
from tests.e2e.resume import (
    WAIT_SECONDS,
    cursor_number,
    live,
    place_resting,
    subscribe,
    update_for,
)
from tests.e2e.server import Server, launch, migrate, server_env
from tests.e2e.test_websocket import TRANSPORT_WS, bearer, open_socket

pytestmark = pytest.mark.e2e


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp_path)
    await redis.start()
    yield redis
    await redis.stop()


async def test_an_event_committed_while_redis_was_away_survives_its_process(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    """Redis dies; an order is placed through one replica (committed, its publish refused);
    that replica is SIGKILLed before Redis is back. The other replica's relay publishes the
    event once Redis returns, and its feed delivers it."""
    database_url = await create_postgres_database()
    overrides = {"TG_OUTBOX_RELAY_SECONDS": "0.2", "TG_OUTBOX_RELAY_GRACE_SECONDS": "0.5"}
    env = server_env(database_url=database_url, redis_url=private_redis.url, overrides=overrides)
    servers: list[Server] = []
    try:
        await migrate(env, tmp_path)
        starting = [launch(env, mode="production", workdir=tmp_path) for _ in range(2)]
        servers += await asyncio.gather(*starting)
        doomed, survivor = servers
        async with httpx.AsyncClient(base_url=doomed.base_url, timeout=10.0) as http:
            api = GraphQLClient(http)
            account, tokens = await api.signed_up()
            async with open_socket(survivor, TRANSPORT_WS, bearer(tokens)) as ws:
                await subscribe(ws)
                await live(ws, api, tokens.access)
                await private_redis.kill()
                placed = await place_resting(api, tokens.access)
                doomed.process.kill()  # SIGKILL: its event is committed, and was never published
                await doomed.process.wait()
                await private_redis.start()  # empty: nothing of before survives in it
                update = await update_for(ws, placed)
                channel = user_channel(int(account.id), "orders")
                number = cursor_number(update["feedCursor"])
                published = await _published(private_redis.url, channel, number)
        relayed_at = await _relayed_at(database_url, placed)
    finally:
        for server in servers:
            await server.stop()
        await drop_postgres_database(database_url)
    assert update["status"] == "OPEN"
    assert published, f"event {number} was not relayed; the survivor's output:\n{survivor.logs()}"
    assert relayed_at is not None


async def _published(url: str, channel: str, number: int) -> bool:
    """Whether event `number` was published on `channel` since Redis restarted (the highest
    number published there reaches it): only a relay, in the replica left, can have."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        for _ in range(int(WAIT_SECONDS / 0.1)):
            if int(await client.get(NUMBER_KEY.format(channel)) or 0) >= number:
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await client.aclose()


async def _relayed_at(database_url: str, order_id: str) -> Any:
    """When the order's event was marked relayed (the relay marks what it published as it
    commits), or None."""
    engine = make_engine(database_url)
    query = select(OutboxEvent.relayed_at).where(
        OutboxEvent.kind == "order.updated",
        OutboxEvent.payload == json.dumps({"id": int(order_id)}),
    )
    try:
        for _ in range(int(WAIT_SECONDS / 0.1)):
            async with make_session_factory(engine)() as session:
                if (relayed_at := (await session.scalars(query)).one()) is not None:
                    return relayed_at
            await asyncio.sleep(0.1)
        return None
    finally:
        await engine.dispose()
