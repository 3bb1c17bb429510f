"""Embedded mode's job runner: the same job functions and cron table, run as asyncio tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from croniter import croniter

from app.db import utcnow
from app.jobs import JobInfo, JobState

log = structlog.get_logger(__name__)
JobFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class CronEntry:
    function: JobFunction
    expression: str

    @property
    def name(self) -> str:
        return f"cron:{self.function.__name__}"


class InProcessQueue:
    """Runs queued jobs at once in this process, at most `max_jobs` at a time."""

    def __init__(
        self,
        functions: Sequence[JobFunction],
        ctx: Mapping[str, Any],
        *,
        cron: Sequence[CronEntry] = (),
        max_jobs: int = 10,
        keep_results: int = 1000,
    ) -> None:
        self._functions = {fn.__name__: fn for fn in functions}
        self._ctx = {**ctx, "queue": self}
        self._cron = list(cron)
        self._jobs: dict[str, JobInfo] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_jobs)
        self._keep_results = keep_results
        self._counter = 0

    def start(self) -> None:
        """Start the cron scheduler; jobs enqueued before or after run either way."""
        for entry in self._cron:
            self._spawn(self._schedule(entry), "cron")

    async def enqueue(
        self, function: str, *, job_id: str | None = None, **kwargs: Any
    ) -> str | None:
        if function not in self._functions:
            raise ValueError(f"no job function named {function!r}")
        if job_id is None:
            self._counter += 1
            job_id = f"{function}:{utcnow().timestamp():.6f}:{self._counter}"
        if job_id in self._jobs:
            return None
        self._jobs[job_id] = JobInfo(
            id=job_id, state=JobState.QUEUED, function=function, enqueued_at=utcnow()
        )
        self._forget_old()
        self._spawn(self._run(job_id, function, kwargs), "job")
        return job_id

    async def info(self, job_id: str) -> JobInfo:
        return self._jobs.get(job_id) or JobInfo(id=job_id, state=JobState.NOT_FOUND)

    async def join(self) -> None:
        """Wait until every job queued so far has finished (tests and shutdown)."""
        while pending := [t for t in self._tasks if t.get_name() == "job"]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job_id: str, function: str, kwargs: dict[str, Any]) -> None:
        async with self._slots:
            started = utcnow()
            self._jobs[job_id] = replace(
                self._jobs[job_id], state=JobState.IN_PROGRESS, started_at=started
            )
            ctx = {**self._ctx, "job_id": job_id, "job_try": 1, "enqueue_time": started}
            try:
                result = await self._functions[function](ctx, **kwargs)
            except Exception as exc:
                log.exception("job.failed", job_id=job_id, function=function)
                self._finish(job_id, JobState.FAILED, error=repr(exc))
            else:
                self._finish(job_id, JobState.COMPLETE, result=result)

    def _finish(
        self, job_id: str, state: JobState, *, result: Any = None, error: str | None = None
    ) -> None:
        self._jobs[job_id] = replace(
            self._jobs[job_id], state=state, result=result, error=error, finished_at=utcnow()
        )

    async def _schedule(self, entry: CronEntry) -> None:
        schedule = croniter(entry.expression, utcnow())
        while True:
            due: datetime = schedule.get_next(datetime)
            await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
            await self.enqueue(
                entry.function.__name__, job_id=f"{entry.name}:{int(due.timestamp())}"
            )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget_old(self) -> None:
        finished = [k for k, v in self._jobs.items() if v.finished_at is not None]
        for job_id in finished[: max(0, len(finished) - self._keep_results)]:
            del self._jobs[job_id]
