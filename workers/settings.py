"""What a worker runs: the job functions and the cron table, for ARQ and the in-process runner."""

from __future__ import annotations

from typing import Any

from arq.cron import CronJob, cron
from croniter import croniter

from app.config import Settings, get_settings
from app.runtime import Runtime, open_runtime
from workers.bot import run_bot_tick
from workers.inprocess import CronEntry, JobFunction
from workers.market import tick_market
from workers.queue import ArqQueue, arq_redis
from workers.user import cleanup_refresh_tokens

FUNCTIONS: list[JobFunction] = [cleanup_refresh_tokens, tick_market, run_bot_tick]


def cron_table(settings: Settings) -> list[CronEntry]:
    entries = [CronEntry(cleanup_refresh_tokens, settings.refresh_token_cleanup_cron)]
    if settings.market_tick_seconds:
        # croniter's optional sixth field is the second.
        every = f"* * * * * */{settings.market_tick_seconds}"
        entries.append(CronEntry(tick_market, every))
    return entries


def to_arq_cron(entry: CronEntry) -> CronJob:
    """Translate a cron expression (five fields, or six with seconds) into ARQ's sets."""
    fields, _ = croniter.expand(entry.expression)
    minute, hour, day, month, weekday, *seconds = (
        None if values == ["*"] else {int(v) for v in values} for values in fields
    )
    # Five fields mean second 0, as in cron; None lets ARQ run the job every second.
    second = seconds[0] if seconds else {0}
    # cron counts weekdays from Sunday (0 or 7), ARQ from Monday (0), like datetime.weekday().
    arq_weekday = None if weekday is None else {(d - 1) % 7 for d in weekday}
    coroutine: Any = entry.function
    return cron(
        coroutine,
        name=entry.name,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        weekday=arq_weekday,
        second=second,
    )


async def attach_runtime(ctx: dict[str, Any]) -> None:
    """Give the jobs of a starting worker what they need from `ctx["runtime"]`."""
    runtime: Runtime = ctx["runtime"]
    # Jobs that queue further jobs share the worker's own ARQ connection.
    runtime.queue = ArqQueue(ctx["redis"], owns_pool=False)
    ctx.update(runtime.job_context())
    runtime.start()  # the outbox relay; once per runtime, whatever the restarts of ARQ's worker


async def _startup(ctx: dict[str, Any]) -> None:
    ctx["runtime"] = open_runtime(ctx["tg_settings"])
    await attach_runtime(ctx)


async def _shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime = ctx["runtime"]
    await runtime.aclose()


def redis_url(settings: Settings) -> str:
    if settings.redis_url is None:
        raise ValueError("an ARQ worker needs TG_REDIS_URL; embedded mode runs jobs in the API")
    return settings.redis_url


def worker_options(
    settings: Settings | None = None, *, runtime: Runtime | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`; tests add `burst=True, poll_delay=0`.

    The worker opens its own runtime at start-up and closes it at shutdown, unless it is given
    one to share (`tradegraph worker` keeps one runtime across the restarts of its ARQ worker).
    """
    settings = settings or get_settings()
    # ARQ's client with the project's timeouts (workers/queue.py says why not `redis_settings`).
    pool = arq_redis(redis_url(settings), timeout=settings.redis_timeout)
    lifecycle: dict[str, Any] = (
        {"on_startup": _startup, "on_shutdown": _shutdown, "ctx": {"tg_settings": settings}}
        if runtime is None
        else {"on_startup": attach_runtime, "ctx": {"tg_settings": settings, "runtime": runtime}}
    )
    return {
        "functions": FUNCTIONS,
        "cron_jobs": [to_arq_cron(entry) for entry in cron_table(settings)],
        "redis_pool": pool,
        # Also when a job whose worker died runs again: ARQ holds it that long and 10 s more.
        "job_timeout": settings.job_timeout_seconds,
        "handle_signals": True,
        **lifecycle,
        **overrides,
    }
