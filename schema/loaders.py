"""Per-request DataLoaders: nested fields batch their reads into one statement per kind."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from app.user.models import User


class Loaders:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        self.user_by_id: DataLoader[int, User | None] = DataLoader(load_fn=self._users)

    async def _users(self, ids: Sequence[int]) -> list[User | None]:
        async with self._session_factory() as session:
            rows = await session.scalars(select(User).where(User.id.in_(ids)))
            found = {user.id: user for user in rows}
        return [found.get(i) for i in ids]
