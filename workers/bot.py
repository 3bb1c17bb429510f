"""Bots' jobs: one job per bot and closed candle, so a bot that fails stops only itself.

A fault of the infrastructure (app/faults.py: the database restarting, a dropped connection,
no pooled connection free, Redis away) is nobody's fault: the job tries again after a pause
that doubles, logging and counting each fault (`tradegraph_bot_tick_faults_total`), and the bot
stays RUNNING. Every try is one whole transaction, so a try that failed left nothing behind,
and a try after one that did commit finds the candle evaluated and places nothing. When the
faults outlast the pauses the job fails; the bot is still RUNNING and evaluates the next candle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog

from app import faults
from app.bot import runner
from app.bot import service as bot_service
from app.config import Settings
from app.events import unit_of_work
from app.jobs import JobQueue
from app.market.simulator import Tick
from app.observability import BOT_TICK_FAULTS

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Pauses before the tries after a fault: a restarted database or a dropped connection is back
# within a second or two, and a retry in the same job keeps the candle it was queued for.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)


async def retrying(settings: Settings, attempt: Callable[[], Awaitable[T]], **context: object) -> T:
    """`attempt()` until it ends without an infrastructure fault; the last fault is raised
    when the pauses are spent or the next would pass half the job's time limit
    (`TG_JOB_TIMEOUT_SECONDS`), so the job ends by itself rather than being cancelled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.job_timeout_seconds / 2
    for tries, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            return await attempt()
        except Exception as exc:
            kind = faults.infrastructure_kind(exc)
            if kind is None:
                raise
            BOT_TICK_FAULTS.labels(kind=kind).inc()
            if delay is None or loop.time() + delay > deadline:
                log.error("bot.fault_outlasted_retries", kind=kind, tries=tries, **context)
                raise
            log.warning("bot.fault_retried", kind=kind, error=repr(exc), retry_in=delay, **context)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")


def bot_tick_job_id(bot_id: int, candle_open_time: datetime) -> str:
    return f"run_bot_tick:{bot_id}:{int(candle_open_time.timestamp())}"


async def run_bot_tick(ctx: dict[str, Any], bot_id: int, candle_open_time: str) -> str:
    """Evaluate one closed candle (its open time in ISO 8601) for one bot; returns the outcome.

    A fault of the bot's own puts it in ERROR with the reason, in the evaluation's transaction
    (`runner.tick`), and the job succeeds: running it again would not help. An infrastructure
    fault is retried (see the module's docstring).
    """
    candle = datetime.fromisoformat(candle_open_time)
    settings: Settings = ctx["settings"]

    async def attempt() -> str:
        async with unit_of_work(ctx["session_factory"], ctx["broker"]) as session:
            outcome = await runner.tick(session, settings, bot_id=bot_id, candle_open_time=candle)
        return outcome.value

    context = {"job": "run_bot_tick", "bot_id": bot_id, "candle": candle_open_time}
    return await retrying(settings, attempt, **context)


async def enqueue_bot_ticks(ctx: dict[str, Any], ticks: Sequence[Tick]) -> int:
    """Queue a `run_bot_tick` for every running bot on each series whose candle just closed;
    returns how many were queued (a job id already queued counts once, so a retry after a
    fault queues nothing twice)."""
    closed = sum(len(tick.closed) for tick in ticks)
    if not closed:
        return 0  # most ticks: no candle ended, no bot to wake
    queue: JobQueue | None = ctx.get("queue")
    if queue is None:
        log.warning("bots.no_queue", closed=closed)
        return 0

    async def attempt() -> int:
        return await _enqueue(ctx, queue, ticks)

    return await retrying(ctx["settings"], attempt, job="enqueue_bot_ticks")


async def _enqueue(ctx: dict[str, Any], queue: JobQueue, ticks: Sequence[Tick]) -> int:
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
