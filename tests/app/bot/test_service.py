"""The bot service on PostgreSQL and SQLite: validation, uniqueness, owner scoping, changes."""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.bot import service as bot_service
from app.bot.models import Bot, BotMode, BotStatus
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.market.models import Timeframe
from app.strategy import service as strategy_service
from tests.factories import make_bot, make_strategy, make_symbol, make_user


async def _refused(error: type[DomainError], call: Awaitable[Any]) -> str | None:
    with pytest.raises(error) as caught:
        await call
    return caught.value.field


async def test_create_normalises_and_records_an_event(session: AsyncSession) -> None:
    user = await make_user(session)
    strategy = await make_strategy(session, owner=user)
    symbol = await make_symbol(session)
    bot = await bot_service.create(
        session,
        owner_id=user.id,
        name="  Trend follower ",
        strategy_id=strategy.id,
        symbol=symbol.name.lower(),
        timeframe="H1",  # by name, as a GraphQL enum travels
        allocated_capital=D("2500.50"),
    )
    assert bot.name == "Trend follower"
    assert (bot.status, bot.mode, bot.timeframe) == (BotStatus.CREATED, BotMode.PAPER, Timeframe.H1)
    assert (bot.strategy_id, bot.symbol_id) == (strategy.id, symbol.id)
    assert (bot.error_reason, bot.last_candle_at, bot.started_at) == (None, None, None)
    channel = events.user_channel(user.id, "bots")
    assert events.Event(channel, "bot.created", {"id": bot.id}) in events.pending(session)
    session.expunge_all()
    stored = await session.get(Bot, bot.id)
    assert stored is not None
    assert stored.allocated_capital == D("2500.50")
    assert stored.timeframe is Timeframe.H1


async def test_create_refuses_bad_input_naming_the_field(session: AsyncSession) -> None:
    user, other = await make_user(session), await make_user(session)
    strategy = await make_strategy(session, owner=user)
    foreign = await make_strategy(session, owner=other)
    symbol = await make_symbol(session)
    closed = await make_symbol(session, is_active=False)

    def create(**overrides: Any) -> Awaitable[Bot]:
        values: dict[str, Any] = {
            "name": "Bot",
            "strategy_id": strategy.id,
            "symbol": symbol.name,
            "timeframe": "1m",
            "allocated_capital": D(100),
            **overrides,
        }
        return bot_service.create(session, owner_id=user.id, **values)

    assert await _refused(InvalidInput, create(name="  ")) == "name"
    assert await _refused(InvalidInput, create(name="x" * 101)) == "name"
    assert await _refused(InvalidInput, create(timeframe="2m")) == "timeframe"
    assert await _refused(InvalidInput, create(mode="SIDEWAYS")) == "mode"
    for capital in (D(0), D(-5), D("NaN"), D("Infinity"), D("1e18"), D("0.1e-18")):
        assert await _refused(InvalidInput, create(allocated_capital=capital)) == "allocatedCapital"
    assert await _refused(NotFound, create(strategy_id=foreign.id)) == "strategyId"
    assert await _refused(NotFound, create(strategy_id=10**9)) == "strategyId"
    assert await _refused(NotFound, create(symbol="NOPE-USD")) == "symbol"
    assert await _refused(InvalidInput, create(symbol=closed.name)) == "symbol"
    assert (await bot_service.list_bots(session, owner_id=user.id)).items == []


async def test_live_trading_is_refused_until_a_connector_exists(session: AsyncSession) -> None:
    user = await make_user(session)
    with pytest.raises(InvalidInput) as caught:
        await make_bot(session, owner=user, mode=BotMode.LIVE)
    assert caught.value.field == "mode"
    assert "exchange connector" in caught.value.message
    bot = await make_bot(session, owner=user)
    refused = bot_service.update(session, owner_id=user.id, bot_id=bot.id, mode="LIVE")
    assert await _refused(InvalidInput, refused) == "mode"


async def test_names_are_unique_per_owner(session: AsyncSession) -> None:
    first, second = await make_user(session), await make_user(session)
    await make_bot(session, owner=first, name="Scalper")
    assert await _refused(Conflict, make_bot(session, owner=first, name=" Scalper ")) == "name"
    assert (await make_bot(session, owner=second, name="Scalper")).owner_id == second.id
    other = await make_bot(session, owner=first, name="Other")
    rename = bot_service.update(session, owner_id=first.id, bot_id=other.id, name="Scalper")
    assert await _refused(Conflict, rename) == "name"


async def test_another_users_bot_is_not_found(session: AsyncSession) -> None:
    owner, stranger = await make_user(session), await make_user(session)
    bot = await make_bot(session, owner=owner)
    ids: dict[str, Any] = {"owner_id": stranger.id, "bot_id": bot.id}
    assert await _refused(NotFound, bot_service.get_owned(session, **ids)) == "id"
    assert await _refused(NotFound, bot_service.update(session, **ids, name="Mine")) == "id"
    assert await _refused(NotFound, bot_service.start(session, **ids)) == "id"
    assert (await bot_service.list_bots(session, owner_id=stranger.id)).items == []
    missing = bot_service.get_owned(session, owner_id=owner.id, bot_id=10**9)
    assert await _refused(NotFound, missing) == "id"


async def test_list_pages_by_id_and_filters_by_status(session: AsyncSession) -> None:
    user = await make_user(session)
    bots = [await make_bot(session, owner=user) for _ in range(3)]
    await bot_service.start(session, owner_id=user.id, bot_id=bots[1].id)
    first = await bot_service.list_bots(session, owner_id=user.id, first=2)
    assert [b.id for b in first.items] == [bots[0].id, bots[1].id]
    assert first.has_next_page
    rest = await bot_service.list_bots(session, owner_id=user.id, first=2, after=first.end_cursor)
    assert [b.id for b in rest.items] == [bots[2].id]
    assert not rest.has_next_page
    running = await bot_service.list_bots(session, owner_id=user.id, status=BotStatus.RUNNING)
    assert [b.id for b in running.items] == [bots[1].id]


async def test_update_changes_what_is_given_and_only_while_not_running(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    bot = await make_bot(session, owner=user)
    other_strategy = await make_strategy(session, owner=user)
    changed = await bot_service.update(
        session,
        owner_id=user.id,
        bot_id=bot.id,
        name="Renamed",
        strategy_id=other_strategy.id,
        timeframe=Timeframe.M5,
        allocated_capital=D(750),
    )
    assert (changed.name, changed.strategy_id) == ("Renamed", other_strategy.id)
    assert (changed.timeframe, changed.allocated_capital) == (Timeframe.M5, D(750))
    assert events.Event(
        events.user_channel(user.id, "bots"), "bot.updated", {"id": bot.id}
    ) in events.pending(session)
    await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    running = bot_service.update(session, owner_id=user.id, bot_id=bot.id, name="Nope")
    assert await _refused(Conflict, running) is None
    await bot_service.pause(session, owner_id=user.id, bot_id=bot.id)
    paused = await bot_service.update(session, owner_id=user.id, bot_id=bot.id, name="Paused")
    assert paused.name == "Paused"


async def test_a_new_series_forgets_the_last_candle(session: AsyncSession) -> None:
    user = await make_user(session)
    bot = await make_bot(session, owner=user)
    bot.last_candle_at = Timeframe.M1.floor(bot.created_at)
    same = await bot_service.update(session, owner_id=user.id, bot_id=bot.id, timeframe="1m")
    assert same.last_candle_at is not None
    moved = await bot_service.update(session, owner_id=user.id, bot_id=bot.id, timeframe="15m")
    assert moved.last_candle_at is None


async def test_strategy_of_another_user_is_not_found_on_update(session: AsyncSession) -> None:
    user, other = await make_user(session), await make_user(session)
    bot = await make_bot(session, owner=user)
    foreign = await make_strategy(session, owner=other)
    refused = bot_service.update(session, owner_id=user.id, bot_id=bot.id, strategy_id=foreign.id)
    assert await _refused(NotFound, refused) == "strategyId"


async def test_running_bots_are_found_by_series(session: AsyncSession) -> None:
    user = await make_user(session)
    symbol = await make_symbol(session)
    running = await make_bot(session, owner=user, symbol=symbol)
    await make_bot(session, owner=user, symbol=symbol)  # created, never started
    hourly = await make_bot(session, owner=user, symbol=symbol, timeframe=Timeframe.H1)
    for bot in (running, hourly):
        await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    found = await bot_service.running_bots(session, symbol_id=symbol.id, timeframe=Timeframe.M1)
    assert found == [running.id]


async def test_a_strategy_in_use_by_any_bot_is_not_deleted(session: AsyncSession) -> None:
    user = await make_user(session)
    strategy = await make_strategy(session, owner=user)
    bot = await make_bot(session, owner=user, strategy=strategy)
    await bot_service.start(session, owner_id=user.id, bot_id=bot.id)
    ids: dict[str, Any] = {"owner_id": user.id, "strategy_id": strategy.id}
    with pytest.raises(Conflict) as caught:
        await strategy_service.delete(session, **ids)
    assert caught.value.field == "id"
    assert "1 bot(s), 1 of them running" in caught.value.message
    # A stopped bot may be started again: it keeps its strategy alive too.
    await bot_service.pause(session, owner_id=user.id, bot_id=bot.id)
    assert await _refused(Conflict, strategy_service.delete(session, **ids)) == "id"
    await bot_service.update(
        session,
        owner_id=user.id,
        bot_id=bot.id,
        strategy_id=(await make_strategy(session, owner=user)).id,
    )
    await strategy_service.delete(session, **ids)
    refused = strategy_service.get_owned(session, **ids)
    assert await _refused(NotFound, refused) is None
