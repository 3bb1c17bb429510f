"""The database refuses a wrong book: a bug that would write one fails instead (both databases)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.order import ledger
from app.order.models import Account, Order, Position
from tests.factories import make_trader, place


async def _refused(session: AsyncSession, row: Any, **values: Any) -> None:
    for name, value in values.items():
        setattr(row, name, value)
    with pytest.raises(IntegrityError):
        async with session.begin_nested():
            await session.flush()


async def _account(session: AsyncSession, settings: Settings) -> tuple[Account, Order]:
    user, symbol = await make_trader(session)
    order = await place(session, settings, user, symbol=symbol.name, type="LIMIT", price=D(90))
    account = await ledger.lock_account(session, settings, owner_id=user.id)
    return account, order


@pytest.mark.parametrize(
    "values",
    [
        {"reserved": D("-0.01")},
        {"balance": D("-0.000000000000000001"), "reserved": D(0)},
        {"balance": D(100), "reserved": D("100.000001")},
    ],
)
async def test_an_account_never_holds_negative_cash_or_more_reserve_than_cash(
    session: AsyncSession, settings: Settings, values: dict[str, D]
) -> None:
    account, _ = await _account(session, settings)
    await _refused(session, account, **values)


@pytest.mark.parametrize(
    "values",
    [
        {"filled_quantity": D("1.001")},
        {"filled_quantity": D(-1)},
        {"reserved": D(-1)},
        {"quantity": D(0), "filled_quantity": D(0)},
    ],
)
async def test_an_order_fills_within_its_quantity(
    session: AsyncSession, settings: Settings, values: dict[str, D]
) -> None:
    _, order = await _account(session, settings)
    await _refused(session, order, **values)


async def test_a_position_is_long_or_flat(session: AsyncSession, settings: Settings) -> None:
    user, symbol = await make_trader(session)
    await place(session, settings, user, symbol=symbol.name)
    await ledger.lock_account(session, settings, owner_id=user.id)
    position = await ledger.lock_position(
        session, owner_id=user.id, bot_id=None, symbol_id=symbol.id
    )
    await _refused(session, position, quantity=D("-0.001"))
    assert isinstance(position, Position)
