"""Health, readiness and metrics of the real server, in both modes."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.client import GraphQLClient
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


async def test_health(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_its_checks(server: Server, http: httpx.AsyncClient) -> None:
    response = await http.get("/ready")
    assert response.status_code == 200
    expected = {"database": "ok"} | ({"redis": "ok"} if server.mode == "production" else {})
    body = response.json()
    assert (body["status"], body["checks"]) == ("ok", expected)


async def test_metrics(http: httpx.AsyncClient, api: GraphQLClient) -> None:
    await api.data("query MetricsProbe { __typename }")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert "tradegraph_websocket_connections" in response.text
    assert (
        'tradegraph_graphql_requests_total{operation="MetricsProbe",type="query"}' in response.text
    )
