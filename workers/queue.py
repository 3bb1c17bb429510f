"""The job queue on ARQ: the API enqueues and reads status; `tradegraph worker` runs the jobs."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from app import redis_options
from app.jobs import JobInfo, JobState

_STATES = {
    JobStatus.deferred: JobState.DEFERRED,
    JobStatus.queued: JobState.QUEUED,
    JobStatus.in_progress: JobState.IN_PROGRESS,
    JobStatus.not_found: JobState.NOT_FOUND,
}


def arq_redis(redis_url: str, *, timeout: float) -> ArqRedis:
    """ARQ's client with the project's timeouts and retry (app/redis_options.py).

    Built here rather than by `arq.create_pool`, which sets no read timeout (a frozen Redis
    would hold every call until the kernel gives up on the socket) and pings at once, retrying
    `conn_retries` times and then raising, so that a process started while Redis is away would
    not start at all. This client connects on first use instead, and each call fails within
    `timeout` while Redis is unreachable.
    """
    client: ArqRedis = ArqRedis.from_url(redis_url, **redis_options.client_options(timeout))
    return client


class ArqQueue:
    def __init__(self, pool: ArqRedis, *, owns_pool: bool = True) -> None:
        self.pool = pool
        self._owns_pool = owns_pool

    @classmethod
    async def connect(
        cls, redis_url: str, *, redis_timeout: float = redis_options.DEFAULT_TIMEOUT
    ) -> ArqQueue:
        """The queue over a new client; it connects on first use (see `arq_redis`)."""
        return cls(arq_redis(redis_url, timeout=redis_timeout))

    async def enqueue(
        self, function: str, *, job_id: str | None = None, **kwargs: Any
    ) -> str | None:
        job = await self.pool.enqueue_job(function, _job_id=job_id, **kwargs)
        return None if job is None else job.job_id

    async def info(self, job_id: str) -> JobInfo:
        job = Job(job_id, self.pool)
        status = await job.status()
        if status is not JobStatus.complete:
            definition = await job.info()
            return JobInfo(
                id=job_id,
                state=_STATES[status],
                function=definition.function if definition else None,
                enqueued_at=definition.enqueue_time if definition else None,
            )
        result = await job.result_info()
        assert result is not None  # complete means a result is stored
        failed = not result.success
        return JobInfo(
            id=job_id,
            state=JobState.FAILED if failed else JobState.COMPLETE,
            function=result.function,
            result=None if failed else result.result,
            error=repr(result.result) if failed else None,
            enqueued_at=result.enqueue_time,
            started_at=result.start_time,
            finished_at=result.finish_time,
        )

    async def aclose(self) -> None:
        if self._owns_pool:
            await self.pool.aclose()
