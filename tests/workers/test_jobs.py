"""The job queue's two implementations run the same job functions with the same results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from arq import Worker
from sqlalchemy import func, select

from app.broker import MemoryBroker
from app.config import Settings
from app.db import make_engine, make_session_factory, utcnow
from app.jobs import JobQueue, JobState
from app.migrate import upgrade_async
from app.user.models import RefreshToken
from tests.conftest import (
    REDIS_URL,
    create_postgres_database,
    drop_postgres_database,
    flush_redis,
    test_settings,
)
from tests.factories import make_user
from workers.inprocess import CronEntry, InProcessQueue
from workers.queue import ArqQueue
from workers.settings import FUNCTIONS, cron_table, to_arq_cron, worker_options


@dataclass
class Backend:
    kind: str
    settings: Settings
    queue: JobQueue

    async def drain(self, **worker_overrides: Any) -> None:
        """Run every queued job to its end."""
        if isinstance(self.queue, InProcessQueue):
            await self.queue.join()
            return
        options = worker_options(self.settings, burst=True, poll_delay=0, handle_signals=False)
        worker = Worker(**{**options, "cron_jobs": [], **worker_overrides})
        await worker.main()
        await worker.close()


@pytest.fixture(params=["inprocess", "arq"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A job queue over its own freshly migrated database, since jobs commit."""
    if request.param == "inprocess":
        url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
        await upgrade_async(url)
        settings = test_settings(database_url=url)
        engine = make_engine(url)
        queue: JobQueue = InProcessQueue(
            FUNCTIONS,
            {
                "settings": settings,
                "session_factory": make_session_factory(engine),
                "broker": MemoryBroker(),
            },
        )
        yield Backend("inprocess", settings, queue)
        await queue.aclose()
        await engine.dispose()
        return
    await flush_redis()
    url = await create_postgres_database()
    await upgrade_async(url)
    settings = test_settings(database_url=url, redis_url=REDIS_URL)
    queue = await ArqQueue.connect(REDIS_URL)
    yield Backend("arq", settings, queue)
    await queue.aclose()
    await drop_postgres_database(url)
    await flush_redis()


async def seed_refresh_tokens(settings: Settings, *, expired: int, live: int) -> None:
    """Commit one user with `expired` refresh tokens past their expiry and `live` ones not."""
    engine = make_engine(settings.database_url)
    async with make_session_factory(engine)() as session:
        user = await make_user(session)
        now = utcnow()
        for n in range(expired + live):
            delta = timedelta(days=-1 if n < expired else 1)
            session.add(
                RefreshToken(
                    user_id=user.id, family_id=f"f{n}", token_hash=f"h{n}", expires_at=now + delta
                )
            )
        await session.commit()
    await engine.dispose()


async def count_refresh_tokens(settings: Settings) -> int:
    engine = make_engine(settings.database_url)
    async with make_session_factory(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(RefreshToken))
    await engine.dispose()
    return int(count or 0)


async def test_cleanup_job_runs_and_reports_its_result(backend: Backend) -> None:
    await seed_refresh_tokens(backend.settings, expired=3, live=2)
    job_id = await backend.queue.enqueue("cleanup_refresh_tokens", job_id="cleanup:test")
    assert job_id == "cleanup:test"
    assert (await backend.queue.info(job_id)).state in {JobState.QUEUED, JobState.IN_PROGRESS}
    await backend.drain()
    info = await backend.queue.info(job_id)
    assert info.state is JobState.COMPLETE
    assert info.result == 3
    assert info.function == "cleanup_refresh_tokens"
    assert info.finished_at is not None
    assert await count_refresh_tokens(backend.settings) == 2


async def test_a_job_id_is_queued_once(backend: Backend) -> None:
    assert await backend.queue.enqueue("cleanup_refresh_tokens", job_id="once") == "once"
    assert await backend.queue.enqueue("cleanup_refresh_tokens", job_id="once") is None
    await backend.drain()


async def test_unknown_job_is_not_found(backend: Backend) -> None:
    assert (await backend.queue.info("no-such-job")).state is JobState.NOT_FOUND


async def explode(ctx: dict[str, Any], *, reason: str) -> None:
    raise RuntimeError(reason)


async def test_a_failing_job_is_reported_with_its_error(backend: Backend) -> None:
    if isinstance(backend.queue, InProcessQueue):
        backend.queue = InProcessQueue([explode], {})
    await backend.queue.enqueue("explode", job_id="boom", reason="out of cheese")
    await backend.drain(functions=[explode])
    info = await backend.queue.info("boom")
    assert info.state is JobState.FAILED
    assert info.error is not None
    assert "out of cheese" in info.error


def test_cron_expressions_translate_to_arq_sets() -> None:
    job = to_arq_cron(CronEntry(explode, "17 3 * * 1-5"))
    assert (job.minute, job.hour, job.day, job.month) == ({17}, {3}, None, None)
    assert job.weekday == {0, 1, 2, 3, 4}  # Monday to Friday, Monday being 0 for ARQ
    sunday = to_arq_cron(CronEntry(explode, "0 0 * * 0"))
    assert sunday.weekday == {6}


def test_cron_table_schedules_the_token_cleanup() -> None:
    settings = test_settings(refresh_token_cleanup_cron="5 4 * * *", market_tick_seconds=0)
    entries = cron_table(settings)
    assert [(e.name, e.expression) for e in entries] == [
        ("cron:cleanup_refresh_tokens", "5 4 * * *")
    ]


async def test_in_process_cron_enqueues_due_jobs() -> None:
    ran: list[str] = []

    async def tick(ctx: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])

    # croniter's sixth field is seconds: due every second.
    queue = InProcessQueue([tick], {}, cron=[CronEntry(tick, "* * * * * *")])
    queue.start()
    try:
        for _ in range(40):
            if ran:
                break
            await asyncio.sleep(0.1)
    finally:
        await queue.aclose()
    assert ran
    assert ran[0].startswith("cron:tick:")
