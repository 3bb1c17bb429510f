"""`/ready`: whether this process can serve, told within a second whatever its pool is doing.

The database is asked through a connection of the check's own (an engine with a pool of one),
never the requests' pool: when every pooled connection is taken and requests queue for them,
a probe in that queue would answer only when they do (28.7 s was once seen). Each check has
`BUDGET` seconds; one that cannot tell by then reports so, and the answer is 503.

How busy the requests' pool is (`pool`) is shown, not judged: a full pool with a database that
answers is a busy process, which sheds what it cannot serve (app/middleware.py), not one to
take out of service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from app.broker import Broker
from app.db import make_engine

BUDGET = 1.0


@dataclass(frozen=True, slots=True)
class Report:
    ready: bool
    body: dict[str, Any]


class Readiness:
    def __init__(self, database_url: str, *, pool: AsyncEngine, broker: Broker | None) -> None:
        """`pool`: the engine requests use (only looked at); `broker`: None without Redis."""
        self.engine = make_engine(database_url, pool_size=1, pool_timeout=BUDGET)
        self.requests_engine = pool
        self.broker = broker

    async def check(self) -> Report:
        names = ["database"]
        probes: list[Awaitable[str]] = [_within_budget(self._database())]
        if self.broker is not None:
            names.append("redis")
            probes.append(_within_budget(self.broker.ping()))
        checks = dict(zip(names, await asyncio.gather(*probes), strict=True))
        ready = all(value == "ok" for value in checks.values())
        body: dict[str, Any] = {"status": "ok" if ready else "unavailable", "checks": checks}
        pool = self.requests_engine.pool
        if isinstance(pool, QueuePool):
            body["pool"] = {"size": pool.size(), "inUse": pool.checkedout()}
        return Report(ready, body)

    async def _database(self) -> bool:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True

    async def aclose(self) -> None:
        await self.engine.dispose()


async def _within_budget(probe: Awaitable[bool]) -> str:
    try:
        async with asyncio.timeout(BUDGET):
            answered = await probe
    except TimeoutError:
        return f"no answer within {BUDGET:g} s"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok" if answered else "error: no answer"
