"""Plain async factories: `await make_user(session, email=...)`."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.user import service as user_service
from app.user.models import Role, User

PASSWORD = "correct horse battery"
_sequence = itertools.count(1)


async def make_user(session: AsyncSession, **overrides: Any) -> User:
    number = next(_sequence)
    values: dict[str, Any] = {
        "email": f"user{number}@example.com",
        "password": PASSWORD,
        "display_name": f"User {number}",
        "role": Role.USER,
        **overrides,
    }
    return await user_service.register(session, **values)


def error_codes(result: Any) -> list[str]:
    return [error.extensions["code"] for error in result.errors or ()]
