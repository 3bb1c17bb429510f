"""Account housekeeping jobs."""

from __future__ import annotations

from typing import Any

from app.events import unit_of_work
from app.user import auth


async def cleanup_refresh_tokens(ctx: dict[str, Any]) -> int:
    """Delete refresh tokens past their expiry; returns how many went."""
    async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
        return await auth.delete_expired(session)
