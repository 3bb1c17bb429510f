"""The simulated market's heartbeat: prices move, resting orders fill, bots hear of candles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from app.config import Settings
from app.events import unit_of_work
from app.market import simulator
from app.market.clock import MarketClock
from app.market.simulator import Tick
from app.order import service as order_service
from workers.bot import enqueue_bot_ticks

log = structlog.get_logger(__name__)


async def tick_market(ctx: dict[str, Any]) -> int:
    """Advance every active symbol one step; returns how many moved.

    The prices commit first, on their own: matching and bots come after, each in its own
    transaction, so neither can hold the market back or undo a tick.
    """
    settings: Settings = ctx["settings"]
    clock: MarketClock = ctx.get("market_clock") or MarketClock()
    async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
        at = await clock.now(session)
        ticks = await simulator.tick_all(session, at=at, seed=settings.market_seed)
    await match_resting_orders(ctx, ticks)
    await enqueue_bot_ticks(ctx, ticks)
    return len(ticks)


async def match_resting_orders(ctx: dict[str, Any], ticks: Sequence[Tick]) -> None:
    """Fill the limit and stop orders each new price crosses, one symbol per transaction: a
    symbol whose matching fails is logged and the others still fill. Simulated prices carry no
    volume to share out, so each price fills what it crosses in full."""
    for tick in ticks:
        try:
            async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
                await order_service.match_orders(
                    session, ctx["settings"], symbol_id=tick.symbol_id, price=tick.price
                )
        except Exception:
            log.exception("market.match_failed", symbol=tick.symbol, price=str(tick.price))
