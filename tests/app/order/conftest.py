"""Committed markets for the concurrency tests: rows every concurrent session can see, and a
way to run one service call as a resolver would (its own transaction, committed or not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import make_engine, make_session_factory
from app.errors import DomainError
from app.market.models import Symbol
from app.order import ledger
from app.user.models import User
from tests.factories import make_trader

Action = Callable[[AsyncSession], Awaitable[Any]]


@dataclass(frozen=True)
class Market:
    """A committed user, symbol and account that concurrent sessions can all see."""

    sessions: async_sessionmaker[AsyncSession]
    user: User
    symbol: Symbol

    async def attempt(self, action: Action, *, hold: float = 0.05) -> tuple[str, Any]:
        """`action` in a transaction of its own, which holds its locks `hold` seconds before
        committing (so that racing transactions overlap); returns ("ok", its result) or the
        domain error's code. A kept rejection commits, as the unit of work does. Anything else
        (a deadlock, a violated constraint) is returned as "error: ..." for the test to see."""
        async with self.sessions() as session:
            try:
                result = await action(session)
            except DomainError as exc:
                await (session.commit() if exc.keep_changes else session.rollback())
                return exc.code, None
            except Exception as exc:
                await session.rollback()
                return f"error: {type(exc).__name__}: {exc}", None
            await asyncio.sleep(hold)
            await session.commit()
            return "ok", result

    async def committed(self, action: Action) -> Any:
        outcome, result = await self.attempt(action, hold=0)
        assert outcome == "ok", outcome
        return result


async def _open_connections(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    """Connect the pool up front: racing transactions then start together, instead of in the
    order their connections happen to open."""

    async def hold(session: AsyncSession) -> None:
        await session.execute(text("SELECT 1"))
        await asyncio.sleep(0.05)

    async def one() -> None:
        async with sessions() as session:
            await hold(session)

    await asyncio.gather(*(one() for _ in range(count)))


@pytest.fixture
async def market(postgres_url: str, settings: Settings) -> AsyncIterator[Market]:
    engine = make_engine(postgres_url, pool_size=32)
    sessions = make_session_factory(engine)
    await _open_connections(sessions, 32)
    async with sessions() as session:
        user, symbol = await make_trader(session)
        # The account exists beforehand, so only the row locks (not its creation) serialise.
        await ledger.lock_account(session, settings, owner_id=user.id)
        await session.commit()
    yield Market(sessions, user, symbol)
    async with sessions() as session:
        await session.execute(delete(User).where(User.id == user.id))
        await session.execute(delete(Symbol).where(Symbol.id == symbol.id))
        await session.commit()
    await engine.dispose()
