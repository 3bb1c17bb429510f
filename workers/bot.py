"""Bots' jobs: one job per bot and closed candle, so a bot that fails stops only itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from app.bot import runner
from app.bot import service as bot_service
from app.errors import DomainError
from app.events import unit_of_work
from app.jobs import JobQueue
from app.market.simulator import Tick

log = structlog.get_logger(__name__)


def bot_tick_job_id(bot_id: int, candle_open_time: datetime) -> str:
    return f"run_bot_tick:{bot_id}:{int(candle_open_time.timestamp())}"


async def run_bot_tick(ctx: dict[str, Any], bot_id: int, candle_open_time: str) -> str:
    """Evaluate one closed candle (its open time in ISO 8601) for one bot; returns the outcome.

    A failure puts the bot in ERROR with the reason, in a transaction of its own (the
    evaluation's is rolled back, or committed when its error keeps changes, as a rejected order
    does). The job itself succeeds: running it again would not help.
    """
    candle = datetime.fromisoformat(candle_open_time)
    try:
        async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
            outcome = await runner.evaluate(
                session, ctx["settings"], bot_id=bot_id, candle_open_time=candle
            )
        return outcome.value
    except DomainError as exc:
        reason = exc.message
        log.info("bot.failed", bot_id=bot_id, candle=candle_open_time, reason=reason)
    except Exception as exc:
        log.exception("bot.crashed", bot_id=bot_id, candle=candle_open_time)
        reason = f"{type(exc).__name__}: {exc}"
    async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
        await bot_service.fail(session, bot_id=bot_id, reason=reason)
    return "error"


async def enqueue_bot_ticks(ctx: dict[str, Any], ticks: Sequence[Tick]) -> int:
    """Queue a `run_bot_tick` for every running bot on each series whose candle just closed;
    returns how many were queued (a job id already queued counts once)."""
    closed = sum(len(tick.closed) for tick in ticks)
    if not closed:
        return 0  # most ticks: no candle ended, no bot to wake
    queue: JobQueue | None = ctx.get("queue")
    if queue is None:
        log.warning("bots.no_queue", closed=closed)
        return 0
    queued = 0
    async with ctx["session_factory"]() as session:
        for tick in ticks:
            for timeframe, bar in tick.closed:
                bots = await bot_service.running_bots(
                    session, symbol_id=tick.symbol_id, timeframe=timeframe
                )
                for bot_id in bots:
                    job_id = await queue.enqueue(
                        "run_bot_tick",
                        job_id=bot_tick_job_id(bot_id, bar.open_time),
                        bot_id=bot_id,
                        candle_open_time=bar.open_time.isoformat(),
                    )
                    if job_id is not None:
                        queued += 1
    return queued
