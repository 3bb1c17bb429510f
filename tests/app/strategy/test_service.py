"""The strategy service on PostgreSQL and SQLite: validation, uniqueness, owner scoping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app import events
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.strategy import service as strategy_service
from app.strategy.kinds import Kind
from app.strategy.models import Strategy
from tests.factories import make_strategy, make_user


async def _refused(error: type[DomainError], call: Awaitable[Any]) -> str | None:
    with pytest.raises(error) as caught:
        await call
    return caught.value.field


async def test_create_normalises_and_reads_back_exact_decimals(session: AsyncSession) -> None:
    user = await make_user(session)
    strategy = await strategy_service.create(
        session,
        owner_id=user.id,
        name="  Dip buyer ",
        kind="RSI_MEAN_REVERSION",
        parameters={"period": 10, "oversold": "27.5", "fraction": 0.25},
    )
    assert strategy.name == "Dip buyer"
    assert strategy.parameters == {
        "period": 10,
        "oversold": "27.5",
        "overbought": "70",
        "fraction": "0.25",
    }
    session.expunge_all()
    stored = await session.get(Strategy, strategy.id)
    assert stored is not None
    values = strategy_service.parameters_of(stored)
    assert values == {
        "period": 10,
        "oversold": Decimal("27.5"),
        "overbought": Decimal(70),
        "fraction": Decimal("0.25"),
    }
    assert type(values["period"]) is int
    assert strategy_service.kind_of(stored) is Kind.RSI_MEAN_REVERSION


async def test_create_refuses_bad_input_naming_the_field(session: AsyncSession) -> None:
    user = await make_user(session)

    def create(**overrides: Any) -> Awaitable[Strategy]:
        values: dict[str, Any] = {"name": "S", "kind": Kind.MACD, "parameters": {}, **overrides}
        return strategy_service.create(session, owner_id=user.id, **values)

    assert await _refused(InvalidInput, create(name="   ")) == "name"
    assert await _refused(InvalidInput, create(name="x" * 101)) == "name"
    assert await _refused(InvalidInput, create(kind="GUESSWORK")) == "kind"
    assert await _refused(InvalidInput, create(parameters={"signal": 1})) == "parameters.signal"
    assert await _refused(InvalidInput, create(parameters={"fast": 40})) == "parameters.fast"
    assert await _refused(InvalidInput, create(parameters=[])) == "parameters"


async def test_names_are_unique_per_owner(session: AsyncSession) -> None:
    first, second = await make_user(session), await make_user(session)
    await make_strategy(session, owner=first, name="Trend")
    duplicate = make_strategy(session, owner=first, name=" Trend ")
    assert await _refused(Conflict, duplicate) == "name"
    # Another owner may use the same name.
    assert (await make_strategy(session, owner=second, name="Trend")).owner_id == second.id


async def test_update_merges_parameters_and_revalidates_them(session: AsyncSession) -> None:
    user = await make_user(session)
    strategy = await make_strategy(
        session, owner=user, parameters={"fast": 5, "slow": 20, "fraction": "0.5"}
    )
    updated = await strategy_service.update(
        session, owner_id=user.id, strategy_id=strategy.id, parameters={"slow": 40}
    )
    assert updated.parameters == {"fast": 5, "slow": 40, "fraction": "0.5"}
    # null resets one parameter to its default; the others stay.
    reset = await strategy_service.update(
        session, owner_id=user.id, strategy_id=strategy.id, parameters={"fraction": None}
    )
    assert reset.parameters == {"fast": 5, "slow": 40, "fraction": "1"}
    bad = strategy_service.update(
        session, owner_id=user.id, strategy_id=strategy.id, parameters={"slow": 4}
    )
    assert await _refused(InvalidInput, bad) == "parameters.fast"  # 5 is no longer < slow


async def test_update_renames_but_not_onto_another_strategy(session: AsyncSession) -> None:
    user = await make_user(session)
    one = await make_strategy(session, owner=user, name="One")
    await make_strategy(session, owner=user, name="Two")
    taken = strategy_service.update(session, owner_id=user.id, strategy_id=one.id, name="Two")
    assert await _refused(Conflict, taken) == "name"
    # Keeping its own name is no conflict.
    same = await strategy_service.update(session, owner_id=user.id, strategy_id=one.id, name="One")
    assert same.name == "One"
    renamed = await strategy_service.update(
        session, owner_id=user.id, strategy_id=one.id, name="Uno"
    )
    assert renamed.name == "Uno"
    assert renamed.parameters == {"fast": 5, "slow": 20, "fraction": "1"}


async def test_delete_removes_it_and_records_an_event(session: AsyncSession) -> None:
    user = await make_user(session)
    strategy = await make_strategy(session, owner=user)
    await strategy_service.delete(session, owner_id=user.id, strategy_id=strategy.id)
    gone = strategy_service.get_owned(session, owner_id=user.id, strategy_id=strategy.id)
    assert await _refused(NotFound, gone) is None
    recorded = [(e.channel, e.kind, e.payload) for e in events.pending(session)]
    channel = f"user:{user.id}:strategies"
    assert recorded[-2:] == [
        (channel, "strategy.created", {"id": strategy.id}),
        (channel, "strategy.deleted", {"id": strategy.id}),
    ]


async def test_list_is_scoped_to_the_owner_and_paginates(session: AsyncSession) -> None:
    user, other = await make_user(session), await make_user(session)
    mine = [(await make_strategy(session, owner=user)).id for _ in range(3)]
    await make_strategy(session, owner=other)
    first = await strategy_service.list_strategies(session, owner_id=user.id, first=2, after=None)
    assert [s.id for s in first.items] == mine[:2]
    assert first.has_next_page
    rest = await strategy_service.list_strategies(
        session, owner_id=user.id, first=2, after=first.end_cursor
    )
    assert [s.id for s in rest.items] == mine[2:]
    assert not rest.has_next_page


Operation = Callable[[AsyncSession, int, int], Awaitable[Any]]
OPERATIONS: dict[str, Operation] = {
    "get": lambda s, owner, i: strategy_service.get_owned(s, owner_id=owner, strategy_id=i),
    "rename": lambda s, owner, i: strategy_service.update(
        s, owner_id=owner, strategy_id=i, name="Mine now"
    ),
    "reconfigure": lambda s, owner, i: strategy_service.update(
        s, owner_id=owner, strategy_id=i, parameters={"fast": 3}
    ),
    "delete": lambda s, owner, i: strategy_service.delete(s, owner_id=owner, strategy_id=i),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_another_user_s_strategy_is_not_found(session: AsyncSession, operation: str) -> None:
    owner, intruder = await make_user(session), await make_user(session)
    strategy = await make_strategy(session, owner=owner, name="Private")
    call = OPERATIONS[operation](session, intruder.id, strategy.id)
    assert await _refused(NotFound, call) is None
    unchanged = await strategy_service.get_owned(
        session, owner_id=owner.id, strategy_id=strategy.id
    )
    assert unchanged.name == "Private"
    assert unchanged.parameters == {"fast": 5, "slow": 20, "fraction": "1"}
    listed = await strategy_service.list_strategies(
        session, owner_id=intruder.id, first=10, after=None
    )
    assert list(listed.items) == []


def test_list_kinds_names_every_kind_once() -> None:
    assert [spec.kind for spec in strategy_service.list_kinds()] == list(Kind)
