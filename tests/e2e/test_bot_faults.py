"""Running bots survive PostgreSQL dropping their connections.

A real `tradegraph serve` on PostgreSQL runs the market at 60x and six bots with its in-process
runner (no Redis: the bots' jobs run in the API process, whose /metrics counts the faults).
Three times, when a bot's tick is in the middle of its transaction, every connection to the
test's own database is terminated (`pg_terminate_backend`, as a restart or a failover does).
The bots stay RUNNING, trade again afterwards, and the faults are counted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.db import make_engine, make_session_factory
from app.market import service as market_service
from app.migrate import upgrade_async
from app.order.models import Order
from tests.conftest import POSTGRES_ADMIN_URL, create_postgres_database, drop_postgres_database
from tests.e2e.server import Server, launch, server_env
from tests.factories import make_bot, make_strategy, make_user

pytestmark = pytest.mark.e2e

BOTS = 6
ROUNDS = 3
WAIT_SECONDS = 60.0
# A bot's tick in the middle of its transaction: its own statements, not the market's.
TICKING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = :database AND xact_start IS NOT NULL AND state <> 'idle'"
    " AND query ~* 'bots[.]strategy_id|UPDATE bots|FROM strategies|FROM positions'"
)
TERMINATE = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :database"
)
FAULTS = re.compile(r'^tradegraph_bot_tick_faults_total\{kind="database"\} (\S+)$', re.MULTILINE)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    url = await create_postgres_database()
    try:
        await upgrade_async(url)
        env = server_env(
            database_url=url,
            redis_url=None,
            overrides={"TG_MARKET_TICK_SECONDS": "1", "TG_MARKET_SPEED": "60"},
        )
        server = await launch(env, mode="embedded", workdir=tmp_path)
        try:
            yield server
        finally:
            await server.stop()
    finally:
        await drop_postgres_database(url)


async def _running_bots(url: str) -> list[int]:
    """One trader's SMA 2/3 bots on BTC-USD's 1m candles, running."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            user = await make_user(session)
            symbol = await market_service.get_symbol_by_name(session, name="BTC-USD")
            strategy = await make_strategy(session, owner=user, parameters={"fast": 2, "slow": 3})
            ids = []
            for _ in range(BOTS):
                bot = await make_bot(
                    session, owner=user, strategy=strategy, symbol=symbol, allocated_capital=D(1000)
                )
                await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
                ids.append(bot.id)
            await session.commit()
        return ids
    finally:
        await engine.dispose()


async def _bot_states(url: str) -> list[tuple[BotStatus, str | None]]:
    # A connection of its own each time: the test ends the pooled ones.
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(Bot.status, Bot.error_reason).order_by(Bot.id))
            return [(BotStatus(status), reason) for status, reason in rows.all()]
    finally:
        await engine.dispose()


async def _drop_connections_mid_tick(admin: AsyncEngine, url: str) -> None:
    """Wait for a bot's tick to be mid-transaction, then end every connection to the
    database; fail at once when no bot is left running to tick."""
    database = {"database": url.rsplit("/", 1)[1]}
    async with admin.connect() as connection:
        for polls in range(1, int(WAIT_SECONDS * 200)):
            if await connection.scalar(TICKING, database):
                assert await connection.scalar(TERMINATE, database)
                return
            if polls % 200 == 0:
                states = await _bot_states(url)
                if all(status is not BotStatus.RUNNING for status, _ in states):
                    pytest.fail(f"no bot is running any more: {states}")
            await asyncio.sleep(0.005)
    pytest.fail(f"no bot ticked within {WAIT_SECONDS} s; the bots: {await _bot_states(url)}")


async def _faults_counted(server: Server) -> Decimal:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        found = FAULTS.search((await http.get("/metrics")).text)
    return Decimal(found.group(1)) if found else Decimal(0)


async def _newest_order(url: str, *, past: int = -1) -> tuple[int, list[Bot]]:
    """The newest order's id (0 without any) once it is past `past`, and the bots then."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            for _ in range(int(WAIT_SECONDS * 10)):
                newest = await session.scalar(select(func.max(Order.id))) or 0
                if newest > past:
                    bots = (await session.scalars(select(Bot).order_by(Bot.id))).all()
                    return newest, list(bots)
                await session.rollback()
                await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    pytest.fail(f"no bot traded within {WAIT_SECONDS} s of the faults")


async def test_bots_stay_running_when_postgres_drops_their_connections(server: Server) -> None:
    url = server.env["TG_DATABASE_URL"]
    await _running_bots(url)
    admin = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        for _ in range(ROUNDS):
            await _drop_connections_mid_tick(admin, url)
            await asyncio.sleep(1.0)  # a candle: the bots tick (and retry) in between
    finally:
        await admin.dispose()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/health")).status_code == 200

    newest, _ = await _newest_order(url)
    _, bots = await _newest_order(url, past=newest)  # the bots trade on
    assert [(b.status, b.error_reason) for b in bots] == [(BotStatus.RUNNING, None)] * BOTS
    assert await _faults_counted(server) >= ROUNDS
