"""`tradegraph worker`: ARQ's worker, started again whenever it loses Redis.

ARQ's `Worker.main` ends at the first Redis error it meets (polling the queue, recording its
health, queueing a cron job, finishing a job), and `Worker.run` then fails again closing it: the
process would exit, and with it the market ticks, the bots and the matching of resting orders,
until someone restarts it. Its own `create_pool` retries only at start-up, `conn_retries` times.

So the supervisor runs one ARQ worker at a time and, when one ends because Redis could not be
reached, lets that worker's jobs finish, drops its connections and starts a fresh one after a
pause that doubles up to `MAX_DELAY`. A fresh worker, rather than the same one again: ARQ's
bookkeeping (its job counter and semaphore, its cron times) may be half updated by the error.
Its cron times then start from now: ticks missed while Redis was away are not made up, as when
the process itself restarts. Jobs queued before or during the outage run once Redis is back,
since they wait in Redis. The process's runtime (engine, broker, market clock) lives across
restarts. Other errors end the process, as before.

SIGTERM and SIGINT stop it as they stop ARQ's worker: running jobs are cancelled, and ARQ runs
them again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import structlog
from arq.worker import Worker
from redis.exceptions import RedisError

from app.config import Settings
from app.observability import REDIS_RECONNECTS, REDIS_UNAVAILABLE
from app.runtime import Runtime, open_runtime
from workers.settings import attach_runtime, redis_url, worker_options

log = structlog.get_logger(__name__)

# Redis refused, dropped, timed out, or answered with an error (a replica that became
# read-only in a failover, a server still loading its data): none is the worker's fault.
REDIS_FAULTS = (RedisError, OSError)
FIRST_DELAY = 0.5
MAX_DELAY = 5.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        redis_url(settings)  # refuses a configuration without Redis before anything starts
        self.settings = settings
        self.restarts = 0
        self._worker: Worker | None = None
        self._stopping = asyncio.Event()
        self._delay = FIRST_DELAY
        self._lost_at: float | None = None  # monotonic time Redis was first missed

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self._stopping.set()
        if self._worker is not None:
            self._worker.handle_sig(signum)  # cancels its jobs and its loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self.stop, signum)
        runtime = open_runtime(self.settings)
        try:
            while not self._stopping.is_set():
                if not await self._run_worker(runtime):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._delay)
                self._delay = min(self._delay * 2, MAX_DELAY)
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)
            await runtime.aclose()

    async def _run_worker(self, runtime: Runtime) -> bool:
        """Run one ARQ worker to its end; True if it ended for want of Redis."""
        options = worker_options(self.settings, runtime=runtime, on_startup=self._started)
        worker = Worker(**{**options, "handle_signals": False})
        self._worker = worker
        try:
            await worker.async_run()
        except REDIS_FAULTS as exc:
            self._lost(exc)
            return True
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                raise
        finally:
            await _retire(worker)
            self._worker = None
        return False

    async def _started(self, ctx: dict[str, Any]) -> None:
        """ARQ's start-up hook, called once the worker's first round trip to Redis succeeded."""
        await attach_runtime(ctx)
        self._delay = FIRST_DELAY
        if self._lost_at is not None:
            log.info(
                "worker.redis_back",
                after_seconds=round(time.monotonic() - self._lost_at, 1),
                restarts=self.restarts,
            )
            REDIS_RECONNECTS.labels("worker").inc()
            self._lost_at = None

    def _lost(self, exc: BaseException) -> None:
        self.restarts += 1
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        REDIS_UNAVAILABLE.labels("worker").inc()
        log.warning(
            "worker.redis_unavailable",
            error=f"{type(exc).__name__}: {exc}",
            restart_in=self._delay,
            restarts=self.restarts,
        )


async def _retire(worker: Worker) -> None:
    """Wait for the worker's jobs (cancelled when stopping), then close its connections,
    whether or not Redis answers."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(*REDIS_FAULTS):
        await worker.pool.delete(worker.health_check_key)
    with contextlib.suppress(*REDIS_FAULTS):
        await worker.pool.aclose()
