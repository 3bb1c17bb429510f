"""The load shedder: past `max_in_flight` GraphQL requests at once, the next waits for a turn
and is refused with 503, a GraphQL error body and `Retry-After` if none comes in time; health
checks are always let through.

The application behind it is a stand-in that holds each /graphql request until released, so
how many are in flight is known exactly (tests/e2e/test_overload.py does the same with the real
server and the database)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import REGISTRY

from app.middleware import LoadShedMiddleware, Message, Receive, Scope, Send

LIMIT = 2
# A request that waits this long fails the test: it was neither served nor refused.
PATIENCE = 5.0


class HeldApp:
    """Answers /graphql once `release` is set (and fails for /fail); anything else at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/graphql":
            self.held += 1
            await self.release.wait()
        if scope["path"] == "/fail":
            raise RuntimeError("the handler failed")
        start: Message = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b"{}"})


@contextlib.asynccontextmanager
async def _shedding(
    *, queue_timeout: float
) -> AsyncIterator[tuple[httpx.AsyncClient, LoadShedMiddleware, HeldApp]]:
    held = HeldApp()
    shedder = LoadShedMiddleware(
        held,
        max_in_flight=LIMIT,
        queue_timeout=queue_timeout,
        paths=frozenset({"/graphql", "/fail"}),
    )
    transport = httpx.ASGITransport(app=shedder)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, shedder, held


def _shed_so_far() -> float:
    return REGISTRY.get_sample_value("tradegraph_requests_shed_total") or 0.0


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE):
        while True:
            if condition():
                return
            await asyncio.sleep(0)


def _hold(client: httpx.AsyncClient, count: int) -> list[asyncio.Task[httpx.Response]]:
    return [asyncio.create_task(client.post("/graphql", json={})) for _ in range(count)]


async def test_a_request_without_a_turn_in_time_is_refused_before_any_work() -> None:
    async with _shedding(queue_timeout=0) as (client, shedder, held):
        shed_before = _shed_so_far()
        admitted = _hold(client, LIMIT)
        await _until(lambda: held.held == LIMIT)

        async with asyncio.timeout(PATIENCE):
            refused = await client.post("/graphql", json={})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/json"
        [error] = refused.json()["errors"]
        assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfter": 1}
        assert "busy" in error["message"]
        assert held.held == LIMIT  # it never reached the application
        assert _shed_so_far() == shed_before + 1
        # Health, readiness and metrics are never shed.
        assert (await client.get("/health")).status_code == 200

        held.release.set()
        assert [(await answer).status_code for answer in admitted] == [200] * LIMIT
        assert shedder.in_flight == 0
        assert (await client.post("/graphql", json={})).status_code == 200


async def test_a_request_past_the_limit_is_served_when_a_turn_comes_in_time() -> None:
    async with _shedding(queue_timeout=PATIENCE * 2) as (client, shedder, held):
        shed_before = _shed_so_far()
        admitted = _hold(client, LIMIT)
        await _until(lambda: held.held == LIMIT)
        [queued] = _hold(client, 1)
        await _until(lambda: shedder.waiting == 1)
        assert held.held == LIMIT

        held.release.set()
        async with asyncio.timeout(PATIENCE):
            answers = [await answer for answer in [*admitted, queued]]
        assert [answer.status_code for answer in answers] == [200] * (LIMIT + 1)
        assert (shedder.in_flight, shedder.waiting, held.held) == (0, 0, LIMIT + 1)
        assert _shed_so_far() == shed_before


async def test_a_request_that_fails_gives_its_turn_back() -> None:
    async with _shedding(queue_timeout=0) as (client, shedder, held):
        held.release.set()
        for _ in range(LIMIT + 1):
            with pytest.raises(RuntimeError, match="the handler failed"):
                await client.get("/fail")
        assert shedder.in_flight == 0
        assert (await client.post("/graphql", json={})).status_code == 200
