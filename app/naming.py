"""Names unique per owner (strategies, bots): one check before writing, the constraint after.

The check gives the usual answer a field-level error; the unique constraint settles the race
of two requests that both passed it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, InvalidInput

MAX_NAME = 100


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", field="name")
    return cleaned


def name_taken(noun: str, name: str) -> Conflict:
    return Conflict(f"you already have a {noun} named {name!r}", field="name")


async def ensure_name_free(
    session: AsyncSession,
    model: Any,
    *,
    noun: str,
    owner_id: int,
    name: str,
    exclude_id: int | None = None,
) -> None:
    """`model` has `id`, `owner_id` and `name` columns; `exclude_id` is the row being renamed."""
    query = select(model.id).where(model.owner_id == owner_id, model.name == name)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    if await session.scalar(query) is not None:
        raise name_taken(noun, name)


async def flush_unique(session: AsyncSession, *, noun: str, name: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        # Two requests raced past the name check; the unique constraint decides.
        raise name_taken(noun, name) from None
