"""The simulated market's heartbeat."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.db import utcnow
from app.events import unit_of_work
from app.market import simulator


async def tick_market(ctx: dict[str, Any]) -> int:
    """Advance every active symbol one step; returns how many moved."""
    settings: Settings = ctx["settings"]
    # Whole seconds: the step drawn for a symbol at a scheduled second is the same on replay.
    at = utcnow().replace(microsecond=0)
    async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
        ticks = await simulator.tick_all(session, at=at, seed=settings.market_seed)
    return len(ticks)
