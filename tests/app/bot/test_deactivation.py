"""A deactivated owner's bots: stopped with the reason in the deactivation's transaction, their
open orders cancelled, and never evaluated or started again.

The races run on PostgreSQL with committed rows: a `start` waiting behind a deactivation, and a
tick of the owner's second bot while the deactivation locks the first (the lock order)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import events
from app.bot import queries, runner
from app.bot import service as bot_service
from app.bot.models import Bot, BotStatus
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.errors import Unauthenticated
from app.market.models import Symbol, Timeframe
from app.order import ledger
from app.order.models import Account, Order, OrderStatus
from app.user import revocation
from app.user import service as user_service
from app.user.models import Role, User
from tests.app.bot.test_runner import CLOSES, START, candle
from tests.factories import (
    make_bot,
    make_candles,
    make_strategy,
    make_symbol,
    make_user,
    place,
    set_price,
)


async def _bot(
    session: AsyncSession, settings: Settings, owner: User, symbol: Symbol, status: BotStatus
) -> Bot:
    bot = await make_bot(session, owner=owner, symbol=symbol)
    ids: dict[str, Any] = {"owner_id": owner.id, "bot_id": bot.id}
    if status is not BotStatus.CREATED:
        await bot_service.start(session, **ids)
    if status is BotStatus.PAUSED:
        await bot_service.pause(session, **ids)
    if status is BotStatus.STOPPED:
        await bot_service.stop(session, settings, **ids)
    if status is BotStatus.ERROR:
        await bot_service.fail(session, bot_id=bot.id, reason="its own fault")
    return bot


async def test_deactivation_stops_the_bots_and_cancels_every_open_order(
    session: AsyncSession, settings: Settings
) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    user = await make_user(session)
    symbol = await make_symbol(session)
    await set_price(session, symbol=symbol, price="100")
    bots = {status: await _bot(session, settings, user, symbol, status) for status in BotStatus}
    running = bots[BotStatus.RUNNING]
    resting = [
        await place(session, settings, user, symbol=symbol.name, type="LIMIT", price=D(90)),
        await place(
            session,
            settings,
            user,
            symbol=symbol.name,
            type="LIMIT",
            price=D(80),
            bot_id=running.id,
        ),
    ]
    events.pending(session).clear()

    await user_service.deactivate(session, settings, actor_id=admin.id, user_id=user.id)

    after = {bot.id: bot for bot in (await session.scalars(select(Bot))).all()}
    for status in (BotStatus.RUNNING, BotStatus.PAUSED):
        stopped = after[bots[status].id]
        assert (stopped.status, stopped.error_reason) == (
            BotStatus.STOPPED,
            user_service.DEACTIVATED,
        )
    for status in (BotStatus.CREATED, BotStatus.STOPPED, BotStatus.ERROR):
        assert after[bots[status].id].status is status
    assert after[bots[BotStatus.ERROR].id].error_reason == "its own fault"
    for order in resting:
        await session.refresh(order)
        assert order.status is OrderStatus.CANCELED
    account = await session.scalar(select(Account).where(Account.owner_id == user.id))
    assert account is not None
    assert account.reserved == 0
    announced = events.Event(revocation.channel(user.id), revocation.REVOKED, {"id": user.id})
    assert announced in events.pending(session)
    bot_events = {e.payload["id"] for e in events.pending(session) if e.channel.endswith(":bots")}
    assert bot_events == {bots[BotStatus.RUNNING].id, bots[BotStatus.PAUSED].id}


async def test_a_running_bot_of_an_inactive_owner_is_neither_queued_nor_evaluated(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    symbol = await make_symbol(session)
    await make_candles(session, symbol=symbol, start=START, closes=CLOSES)
    await set_price(session, symbol=symbol, price="110")
    strategy = await make_strategy(session, owner=user, parameters={"fast": 2, "slow": 3})
    bot = await make_bot(session, owner=user, strategy=strategy, symbol=symbol)
    await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    assert await queries.running_bots(session, symbol_id=symbol.id, timeframe=Timeframe.M1) == [
        bot.id
    ]
    # Something slipped: the owner is inactive, the bot still RUNNING.
    user.is_active = False
    await session.flush()

    assert await queries.running_bots(session, symbol_id=symbol.id, timeframe=Timeframe.M1) == []
    outcome = await runner.tick(session, settings, bot_id=bot.id, candle_open_time=candle(5))
    assert outcome is runner.Outcome.SKIPPED
    assert (await session.scalars(select(Order).where(Order.bot_id == bot.id))).all() == []
    await bot_service.pause(session, owner_id=user.id, bot_id=bot.id)
    with pytest.raises(Unauthenticated):
        await bot_service.start(session, owner_id=user.id, bot_id=bot.id)


# The races: committed rows on PostgreSQL, each transaction in a session of its own.

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Owner:
    sessions: Sessions
    admin: User
    user: User
    bots: list[Bot]


@pytest.fixture
async def owner(postgres_url: str, settings: Settings) -> AsyncIterator[Owner]:
    """A committed user with an account and two bots: the first running, the second stopped."""
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    async with sessions() as session:
        admin = await make_user(session, role=Role.ADMIN)
        user = await make_user(session)
        symbol = await make_symbol(session)
        await set_price(session, symbol=symbol, price="100")
        await ledger.lock_account(session, settings, owner_id=user.id)
        bots = [
            await _bot(session, settings, user, symbol, status)
            for status in (BotStatus.RUNNING, BotStatus.STOPPED)
        ]
        await session.commit()
    yield Owner(sessions, admin, user, bots)
    async with sessions() as session:
        await session.execute(delete(User).where(User.id.in_([admin.id, user.id])))
        await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
        await session.commit()
    await engine.dispose()


async def _waiting_for_a_lock(sessions: Sessions, task: asyncio.Task[Any]) -> None:
    """Return once a session of this database waits for a lock, or `task` has ended (without
    the lock it would have waited for)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with sessions() as probe:
        for _ in range(1000):
            if task.done() or await probe.scalar(query):
                return
            # PostgreSQL reads pg_stat_activity once per transaction.
            await probe.rollback()
            await asyncio.sleep(0.01)
    pytest.fail("no transaction came to wait for the lock")


async def _in_own_transaction(
    sessions: Sessions, work: Callable[[AsyncSession], Awaitable[Any]]
) -> Any:
    async with sessions() as session:
        result = await work(session)
        await session.commit()
        return result


@pytest.mark.postgres
async def test_a_start_waiting_behind_a_deactivation_is_refused(
    owner: Owner, settings: Settings
) -> None:
    stopped = owner.bots[1]

    async def start(session: AsyncSession) -> Bot:
        return await bot_service.start(session, owner_id=owner.user.id, bot_id=stopped.id)

    async with owner.sessions() as deactivating:
        await user_service.deactivate(
            deactivating, settings, actor_id=owner.admin.id, user_id=owner.user.id
        )
        # The start was authenticated before the deactivation commits; it waits for the bot.
        starting = asyncio.create_task(_in_own_transaction(owner.sessions, start))
        await _waiting_for_a_lock(owner.sessions, starting)
        await deactivating.commit()
    with pytest.raises(Unauthenticated):
        await starting
    async with owner.sessions() as session:
        bot = await session.get(Bot, stopped.id)
        assert bot is not None
        assert bot.status is BotStatus.STOPPED


@pytest.mark.postgres
async def test_a_deactivation_and_a_tick_of_the_second_bot_take_turns(
    owner: Owner, settings: Settings
) -> None:
    """The tick holds the second bot and then wants the account; the deactivation, which
    locks every bot before the account, waits for it instead of holding the account."""
    first, second = owner.bots
    async with owner.sessions() as session:
        bot = await session.get(Bot, second.id)
        assert bot is not None
        await bot_service.start(session, owner_id=owner.user.id, bot_id=bot.id)
        await session.commit()

    async def deactivate(session: AsyncSession) -> User:
        return await user_service.deactivate(
            session, settings, actor_id=owner.admin.id, user_id=owner.user.id
        )

    async with owner.sessions() as ticking:
        assert await queries.locked(ticking, second.id) is not None
        deactivating = asyncio.create_task(_in_own_transaction(owner.sessions, deactivate))
        await _waiting_for_a_lock(owner.sessions, deactivating)
        # What a tick does next under its bot's lock: the owner's account.
        await ledger.lock_account(ticking, settings, owner_id=owner.user.id)
        await ticking.commit()
    await deactivating
    async with owner.sessions() as session:
        bots = (await session.scalars(select(Bot).where(Bot.id.in_([first.id, second.id])))).all()
        assert {bot.status for bot in bots} == {BotStatus.STOPPED}
