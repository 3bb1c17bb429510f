"""Keyset (cursor) pagination over an integer primary key, newest last."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput

T = TypeVar("T")
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_next_page: bool
    end_cursor: str | None


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("malformed cursor", field="after") from None
    prefix, _, key = text.partition(":")
    if prefix != "k" or not key.isdigit():
        raise InvalidInput("malformed cursor", field="after")
    return int(key)


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    key: InstrumentedAttribute[int],
    *,
    first: int,
    after: str | None,
) -> Page[Any]:
    if not 1 <= first <= MAX_PAGE:
        raise InvalidInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    if after is not None:
        query = query.where(key > decode_cursor(after))
    rows = list((await session.scalars(query.order_by(key).limit(first + 1))).all())
    has_next = len(rows) > first
    items = rows[:first]
    end = encode_cursor(getattr(items[-1], key.key)) if items else None
    return Page(items=items, has_next_page=has_next, end_cursor=end)
