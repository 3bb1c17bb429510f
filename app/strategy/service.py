"""A user's strategies: a built-in kind with validated parameters, scoped to its owner."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.errors import Conflict, InvalidInput, NotFound
from app.pagination import Page, paginate
from app.strategy import kinds
from app.strategy.kinds import Kind, KindSpec, Parameters
from app.strategy.models import Strategy

MAX_NAME = 100


def _changed(session: AsyncSession, strategy: Strategy, kind: str) -> None:
    channel = events.user_channel(strategy.owner_id, "strategies")
    events.record(session, events.Event(channel, kind, {"id": strategy.id}))


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", field="name")
    return cleaned


def kind_of(strategy: Strategy) -> Kind:
    return Kind(strategy.kind)


def parameters_of(strategy: Strategy) -> Parameters:
    """The stored parameters as ints and Decimals (what the signal code takes)."""
    return kinds.decode(kind_of(strategy), strategy.parameters)


def list_kinds() -> Sequence[KindSpec]:
    return list(kinds.KINDS.values())


def _name_taken(name: str) -> Conflict:
    return Conflict(f"you already have a strategy named {name!r}", field="name")


async def _ensure_name_free(
    session: AsyncSession, *, owner_id: int, name: str, strategy_id: int | None = None
) -> None:
    query = select(Strategy.id).where(Strategy.owner_id == owner_id, Strategy.name == name)
    if strategy_id is not None:
        query = query.where(Strategy.id != strategy_id)
    if await session.scalar(query) is not None:
        raise _name_taken(name)


async def _flush_unique(session: AsyncSession, name: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        # Two requests raced past the name check; the unique constraint decides.
        raise _name_taken(name) from None


async def create(
    session: AsyncSession, *, owner_id: int, name: str, kind: Kind | str, parameters: object
) -> Strategy:
    """`parameters` is the client's raw JSON object; missing or null ones take their defaults."""
    cleaned = check_name(name)
    checked_kind = kinds.parse_kind(kind)
    values = kinds.validate(checked_kind, parameters)
    await _ensure_name_free(session, owner_id=owner_id, name=cleaned)
    strategy = Strategy(
        owner_id=owner_id, name=cleaned, kind=checked_kind.value, parameters=kinds.encode(values)
    )
    session.add(strategy)
    await _flush_unique(session, cleaned)
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
        strategy.name = check_name(name)
        await _ensure_name_free(
            session, owner_id=owner_id, name=strategy.name, strategy_id=strategy.id
        )
    await _flush_unique(session, strategy.name)
    _changed(session, strategy, "strategy.updated")
    return strategy


async def delete(session: AsyncSession, *, owner_id: int, strategy_id: int) -> None:
    strategy = await get_owned(session, owner_id=owner_id, strategy_id=strategy_id)
    # BOTS ISSUE HOOK: refuse here with Conflict(field="id") while a RUNNING bot uses this
    # strategy (the rule; stopped bots may follow it via the foreign key's ON DELETE).
    # There are no bots yet, so every owned strategy may go.
    await session.delete(strategy)
    await session.flush()
    _changed(session, strategy, "strategy.deleted")


async def list_strategies(
    session: AsyncSession, *, owner_id: int, first: int, after: str | None
) -> Page[Strategy]:
    query = select(Strategy).where(Strategy.owner_id == owner_id)
    return await paginate(session, query, Strategy.id, first=first, after=after)
