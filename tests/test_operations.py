"""Health, readiness and metrics endpoints, on the real application object."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from app.main import create_app
from app.readiness import Readiness
from app.runtime import Runtime
from tests.conftest import test_settings


async def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def migrated_sqlite(tmp_path: Path) -> str:
    from app.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    await upgrade_async(url)
    return url


async def _close(app: Starlette) -> None:
    runtime: Runtime = app.state.runtime
    readiness: Readiness = app.state.readiness
    await readiness.aclose()
    await runtime.aclose()


async def test_health_ready_and_metrics(migrated_sqlite: str) -> None:
    app = create_app(test_settings(database_url=migrated_sqlite))
    async with await _client(app) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert (body["status"], body["checks"]) == ("ok", {"database": "ok"})
        # How busy the requests' pool is, shown beside the checks (not one of them).
        assert body["pool"]["inUse"] == 0
        await client.post("/graphql", json={"query": "query Probe { me { id } }"})
        metrics = (await client.get("/metrics")).text
        assert 'tradegraph_graphql_requests_total{operation="Probe",type="query"}' in metrics
        assert 'tradegraph_graphql_errors_total{code="UNAUTHENTICATED"}' in metrics
        assert "tradegraph_websocket_connections" in metrics
        response = await client.get("/health", headers={"x-request-id": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
    await _close(app)


async def test_ready_names_what_is_down(migrated_sqlite: str) -> None:
    # Nothing listens on port 1: the same failure as a Redis that went away.
    app = create_app(test_settings(database_url=migrated_sqlite, redis_url="redis://127.0.0.1:1/0"))
    async with await _client(app) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error")
    await _close(app)


def test_operation_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from schema import extensions

    monkeypatch.setattr(extensions, "_operation_names", set())
    monkeypatch.setattr(extensions, "MAX_OPERATION_NAMES", 2)
    labels = [extensions.operation_label(n, valid=True) for n in ("A", "B", "C", "A")]
    assert labels == ["A", "B", "other", "A"]
    assert extensions.operation_label(None, valid=True) == "anonymous"
    assert extensions.operation_label("A", valid=False) == "invalid"
