"""What a careless or hostile client gets: clear 4xx answers and error codes, never a traceback.

Also the refusal to start in production with unsafe settings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.client import JSON, REGISTER, GraphQLClient, assert_clean, new_email
from tests.e2e.server import Server, run_cli, server_env

pytestmark = pytest.mark.e2e

BODY_LIMIT = 20_000
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, str]:
    # The schema is only two levels deep so far (users -> nodes -> id), so a depth limit of 1
    # is what makes the limiter bite with a real, non-introspection query.
    return {"TG_MAX_BODY_BYTES": str(BODY_LIMIT), "TG_MAX_QUERY_DEPTH": "1"}


@pytest.fixture(scope="module")
def server(embedded_server: Server) -> Server:
    """Bad input is handled before any mode-specific code: the embedded server is enough."""
    return embedded_server


def only_error(result: JSON) -> JSON:
    assert len(result.get("errors") or []) == 1, result
    error: JSON = result["errors"][0]
    return error


@pytest.mark.parametrize(
    "body", [b"{bad", b'{"query": ', b"\xff\xfe", b""], ids=["brace", "cut", "binary", "empty"]
)
async def test_malformed_json_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert_clean(response)
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("body", [b"null", b'"query"', b"5", b"true"])
async def test_json_that_is_not_an_object_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    # App bug: schema/view.py hands any JSON value to Strawberry, which calls `.get` on it;
    # `null`, a string or a number make a 500 and an error log instead of a 400.
    response = await http.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )
    assert "Traceback" not in response.text
    assert response.status_code == 400, f"{response.status_code}: {response.text}"


async def test_unknown_field_fails_validation(api: GraphQLClient) -> None:
    error = only_error(await api.execute("{ nope }"))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nope" in error["message"]


async def test_syntax_error_fails_parsing(api: GraphQLClient) -> None:
    result = await api.execute("{ me ")
    assert only_error(result)["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "data" not in result


async def test_query_deeper_than_the_limit_fails_validation(api: GraphQLClient) -> None:
    result = await api.execute("{ users(first: 1) { nodes { id } } }")
    error = only_error(result)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]
    assert "data" not in result


async def test_deep_introspection_fails_validation(api: GraphQLClient) -> None:
    # Strawberry's depth limiter skips `__` fields; graphql-core's own rule bounds these.
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = only_error(await api.execute(query))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]


@pytest.mark.parametrize(
    "variables", [{"name": 5}, {"name": None}, {}], ids=["number", "null", "missing"]
)
async def test_wrong_variable_is_bad_user_input(api: GraphQLClient, variables: JSON) -> None:
    query = "query Type($name: String!) { __type(name: $name) { name } }"
    error = only_error(await api.execute(query, variables))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$name" in error["message"]


async def test_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    padding = "x" * BODY_LIMIT
    declared = await http.post("/graphql", json={"query": "{ __typename }", "p": padding})
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "p": "'
        for _ in range(BODY_LIMIT // 1000 + 2):
            yield b"x" * 1000
        yield b'"}'

    # No Content-Length: the limit still holds for a streamed (chunked) body.
    streamed = await http.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    for response in (declared, streamed):
        assert "Traceback" not in response.text


async def test_graphql_response_media_type(http: httpx.AsyncClient) -> None:
    headers = {"Accept": GRAPHQL_RESPONSE}

    invalid = await http.post("/graphql", json={"query": "{ nope }"}, headers=headers)
    assert invalid.status_code == 400
    assert invalid.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert "data" not in invalid.json()
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    valid = await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert valid.status_code == 200
    assert valid.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert valid.json() == {"data": {"__typename": "Query"}}

    # A field error happens during execution: there is a `data` key (null), hence 200.
    refused = await http.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
    assert refused.status_code == 200
    assert refused.json()["data"] is None


async def test_query_over_get(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_mutation_over_get_is_refused_and_not_run(
    http: httpx.AsyncClient, api: GraphQLClient
) -> None:
    email = new_email()
    variables = {"input": {"email": email, "password": "long-enough-pw", "displayName": "G"}}
    params = {"query": REGISTER, "variables": json.dumps(variables)}
    response = await http.get("/graphql", params=params)
    assert_clean(response)
    assert 400 <= response.status_code < 500

    # Had the GET run, this would be a CONFLICT.
    assert (await api.data(REGISTER, variables))["register"]["email"] == email


async def test_subscription_over_plain_http_is_refused(http: httpx.AsyncClient) -> None:
    # App bug: Strawberry lets a subscription through schema.execute for a plain POST; its
    # resolver then returns a generator, which is logged and masked as an internal error.
    query = "subscription { accountUpdates { id } }"
    response = await http.post("/graphql", json={"query": query})
    assert "Traceback" not in response.text
    assert "INTERNAL_SERVER_ERROR" not in response.text, response.text
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "TG_SECRET_KEY"),
        ({"TG_SECRET_KEY": "too-short"}, "TG_SECRET_KEY"),
        ({"TG_SECRET_KEY": "s" * 40, "TG_DEBUG": "true"}, "TG_DEBUG"),
    ],
    ids=["default-secret", "short-secret", "debug"],
)
async def test_production_refuses_unsafe_settings(
    tmp_path_factory: pytest.TempPathFactory, overrides: dict[str, str], variable: str
) -> None:
    workdir = tmp_path_factory.mktemp("unsafe")
    env = server_env(
        database_url=f"sqlite+aiosqlite:///{workdir / 'unused.db'}",
        redis_url=None,
        overrides={"TG_ENVIRONMENT": "production", **overrides},
    )
    result = await run_cli("serve", "--port", "0", env=env, cwd=workdir, seconds=10.0)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


async def test_a_field_error_keeps_data_null(http: httpx.AsyncClient) -> None:
    """Bad input found while executing is a field error: `data` stays, as null."""
    variables = {"input": {"email": new_email(), "password": "short", "displayName": "X"}}
    response = await http.post(
        "/graphql",
        json={"query": REGISTER, "variables": variables},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
