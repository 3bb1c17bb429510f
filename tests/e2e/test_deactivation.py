"""Deactivation reaches everything: a trader whose bot is trading and whose order feed is open
is deactivated by an admin; the feed closes with 4403, the bot is STOPPED with the reason and
places nothing more while the market goes on.

Production mode, where the request, the feed and the bot are in three places: the API process
takes the deactivation and holds the WebSocket (told through Redis), a real `tradegraph worker`
runs the market at 60x (a 1m candle closes every second) and the bot. (Embedded mode runs the
same code in one process: tests/app/bot/test_deactivation.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot.models import Bot, BotStatus
from app.db import make_engine, make_session_factory
from app.market.models import Candle, Symbol, Timeframe
from app.order.models import OPEN_STATUSES, Order
from app.user.models import Role
from app.user.service import DEACTIVATED
from tests.e2e.client import Account, GraphQLClient, new_email
from tests.e2e.server import Server, worker_process
from tests.e2e.test_accounts import DEACTIVATE
from tests.e2e.test_trading import _bot_that_runs
from tests.e2e.test_websocket import TRANSPORT_WS, bearer, open_socket, receive, until_closed
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.e2e

ORDER_UPDATES = "subscription($bot: ID!) { orderUpdates(botId: $bot) { id status } }"
# Simulated market a bot may need before it first trades (SMA 2/3 crosses every few candles).
FIRST_ORDER_SECONDS = 60.0
# Candles the market closes after the deactivation, each one a tick the bot would have had.
CANDLES_AFTER = 4


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    return {"TG_MARKET_TICK_SECONDS": "1", "TG_MARKET_SPEED": "60"}


@pytest.fixture
async def api(production_server: Server) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=production_server.base_url, timeout=10.0) as http:
        yield GraphQLClient(http)


@asynccontextmanager
async def database(server: Server) -> AsyncIterator[AsyncSession]:
    """A session on the server's own database, to see what its clients no longer may."""
    engine = make_engine(server.env["TG_DATABASE_URL"])
    try:
        async with make_session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def _latest_candle(session: AsyncSession) -> datetime | None:
    query = (
        select(func.max(Candle.open_time))
        .join(Symbol, Symbol.id == Candle.symbol_id)
        .where(Symbol.name == "BTC-USD", Candle.timeframe == Timeframe.M1)
    )
    latest: datetime | None = await session.scalar(query)
    await session.rollback()  # the next read sees what committed since
    return latest


async def _market_moves_on(session: AsyncSession, candles: int) -> None:
    """Return once the market has closed `candles` more 1m candles."""
    start = await _latest_candle(session)
    assert start is not None
    for _ in range(600):
        latest = await _latest_candle(session)
        if latest is not None and latest >= start + candles * Timeframe.M1.duration:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the market did not close {candles} candles within a minute")


async def _admin(server: Server) -> Account:
    async with database(server) as session:
        admin = await make_user(session, role=Role.ADMIN, email=new_email())
        await session.commit()
    return Account(id=str(admin.id), email=admin.email, password=PASSWORD)


async def test_a_deactivated_traders_feed_closes_and_their_bot_stops_trading(
    production_server: Server, api: GraphQLClient
) -> None:
    admin_token = (await api.login(await _admin(production_server))).access
    user, tokens = await api.signed_up()
    bot_id = await _bot_that_runs(api, tokens.access)
    async with worker_process(production_server):  # the market and the bot
        async with open_socket(production_server, TRANSPORT_WS, bearer(tokens)) as ws:
            assert (await receive(ws))["type"] == "connection_ack"
            subscribe = {"query": ORDER_UPDATES, "variables": {"bot": bot_id}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
            first = await receive(ws, FIRST_ORDER_SECONDS)
            assert first["type"] == "next", first  # the bot trades, and the feed streams it

            await api.data(DEACTIVATE, {"id": user.id}, token=admin_token)
            _, code = await until_closed(ws)
        assert code == 4403

        async with database(production_server) as session:
            bot = await session.get(Bot, int(bot_id))
            assert bot is not None
            assert (bot.status, bot.error_reason) == (BotStatus.STOPPED, DEACTIVATED)
            orders = select(func.count()).select_from(Order).where(Order.bot_id == bot.id)
            placed = await session.scalar(orders)
            assert placed
            await _market_moves_on(session, CANDLES_AFTER)
            assert await session.scalar(orders) == placed
            still_open = orders.where(Order.status.in_(OPEN_STATUSES))
            assert await session.scalar(still_open) == 0
            await session.refresh(bot)
            assert bot.status is BotStatus.STOPPED
