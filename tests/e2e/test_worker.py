"""`tradegraph worker` as an operator runs it: a real ARQ worker process doing a real job."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.jobs import JobState
from tests.conftest import REDIS_URL, test_settings
from tests.e2e.server import Server, worker_process
from tests.workers.test_jobs import count_refresh_tokens, seed_refresh_tokens
from workers.queue import ArqQueue

pytestmark = pytest.mark.e2e


async def test_worker_process_runs_the_token_cleanup(production_server: Server) -> None:
    settings = test_settings(database_url=production_server.env["TG_DATABASE_URL"])
    await seed_refresh_tokens(settings, expired=2, live=1)
    before = await count_refresh_tokens(settings)
    queue = await ArqQueue.connect(REDIS_URL)
    try:
        async with worker_process(production_server):
            job_id = await queue.enqueue("cleanup_refresh_tokens", job_id=f"e2e:{uuid.uuid4().hex}")
            assert job_id is not None
            for _ in range(200):
                info = await queue.info(job_id)
                if info.state in (JobState.COMPLETE, JobState.FAILED):
                    break
                await asyncio.sleep(0.1)
            assert info.state is JobState.COMPLETE, info
            assert info.result == 2
            assert await count_refresh_tokens(settings) == before - 2
    finally:
        await queue.aclose()
