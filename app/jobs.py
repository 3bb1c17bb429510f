"""The job queue the API talks to; ARQ and the in-process runner (workers/) implement it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class JobState(enum.StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    FAILED = "failed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    state: JobState
    function: str | None = None
    result: Any = None
    error: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobQueue(Protocol):
    async def enqueue(
        self, function: str, *, job_id: str | None = None, **kwargs: Any
    ) -> str | None:
        """Queue a job; returns its id, or None when a job with that id already exists."""
        ...

    async def info(self, job_id: str) -> JobInfo: ...

    async def aclose(self) -> None: ...
