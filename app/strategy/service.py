"""A user's strategies: a built-in kind with validated parameters, scoped to its owner."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, naming
from app.bot import queries as bot_queries
from app.errors import Conflict, NotFound
from app.pagination import Page, paginate
from app.strategy import kinds
from app.strategy.kinds import Kind, KindSpec, Parameters
from app.strategy.models import Strategy


def _changed(session: AsyncSession, strategy: Strategy, kind: str) -> None:
    channel = events.user_channel(strategy.owner_id, "strategies")
    events.record(session, events.Event(channel, kind, {"id": strategy.id}))


def kind_of(strategy: Strategy) -> Kind:
    return Kind(strategy.kind)


def parameters_of(strategy: Strategy) -> Parameters:
    """The stored parameters as ints and Decimals (what the signal code takes)."""
    return kinds.decode(kind_of(strategy), strategy.parameters)


def list_kinds() -> Sequence[KindSpec]:
    return list(kinds.KINDS.values())


async def create(
    session: AsyncSession, *, owner_id: int, name: str, kind: Kind | str, parameters: object
) -> Strategy:
    """`parameters` is the client's raw JSON object; missing or null ones take their defaults."""
    cleaned = naming.check_name(name)
    checked_kind = kinds.parse_kind(kind)
    values = kinds.validate(checked_kind, parameters)
    await naming.ensure_name_free(
        session, Strategy, noun="strategy", owner_id=owner_id, name=cleaned
    )
    strategy = Strategy(
        owner_id=owner_id, name=cleaned, kind=checked_kind.value, parameters=kinds.encode(values)
    )
    session.add(strategy)
    await naming.flush_unique(session, noun="strategy", name=cleaned)
    _changed(session, strategy, "strategy.created")
    return strategy


async def get_owned(session: AsyncSession, *, owner_id: int, strategy_id: int) -> Strategy:
    strategy = await session.get(Strategy, strategy_id)
    # Another user's strategy is reported exactly like a missing one: ids reveal nothing.
    if strategy is None or strategy.owner_id != owner_id:
        raise NotFound(f"strategy {strategy_id} not found")
    return strategy


async def update(
    session: AsyncSession,
    *,
    owner_id: int,
    strategy_id: int,
    name: str | None = None,
    parameters: object = None,
) -> Strategy:
    """Rename and/or change parameters; the kind never changes.

    Given parameters are merged over the current ones, so a client may send only what it
    changes; a parameter sent as null goes back to its default. A running bot picks the new
    values up at its next candle.
    """
    strategy = await get_owned(session, owner_id=owner_id, strategy_id=strategy_id)
    if parameters is not None:
        merged = {**kinds.encode(parameters_of(strategy)), **kinds.as_object(parameters)}
        strategy.parameters = kinds.encode(kinds.validate(kind_of(strategy), merged))
    if name is not None:
        strategy.name = naming.check_name(name)
        await naming.ensure_name_free(
            session,
            Strategy,
            noun="strategy",
            owner_id=owner_id,
            name=strategy.name,
            exclude_id=strategy.id,
        )
    await naming.flush_unique(session, noun="strategy", name=strategy.name)
    _changed(session, strategy, "strategy.updated")
    return strategy


async def delete(session: AsyncSession, *, owner_id: int, strategy_id: int) -> None:
    strategy = await get_owned(session, owner_id=owner_id, strategy_id=strategy_id)
    # Refused while any bot uses it, running or not: a stopped bot may be started again and
    # must still know its strategy (the bots' foreign key is ON DELETE RESTRICT). The client
    # deletes those bots, or points them at another strategy, first.
    used, running = await bot_queries.count_using_strategy(session, strategy_id=strategy.id)
    if used:
        raise Conflict(
            f"strategy {strategy_id} is used by {used} bot(s), {running} of them running; "
            "delete them or give them another strategy first",
            field="id",
        )
    await session.delete(strategy)
    await session.flush()
    _changed(session, strategy, "strategy.deleted")


async def list_strategies(
    session: AsyncSession, *, owner_id: int, first: int, after: str | None
) -> Page[Strategy]:
    query = select(Strategy).where(Strategy.owner_id == owner_id)
    return await paginate(session, query, Strategy.id, first=first, after=after)
