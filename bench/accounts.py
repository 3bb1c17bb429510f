"""Benchmark the account read path (`me`) and login against one real server process.

    .venv/bin/python -m bench.accounts            # embedded SQLite
    TG_BENCH_POSTGRES=postgresql+asyncpg://postgres@127.0.0.1:5432/tg_bench \
    TG_BENCH_REDIS=redis://127.0.0.1:6379/8 .venv/bin/python -m bench.accounts

Prints requests per second and latency percentiles for each operation, 10 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid

import httpx

from bench.load import Figures, run, server

ME = {"query": "{ me { id email displayName role } }"}


async def _token(http: httpx.AsyncClient, email: str, password: str) -> str:
    register = (
        "mutation($e: String!, $p: String!) "
        '{ register(input: {email: $e, password: $p, displayName: "Bench"}) { id } }'
    )
    await http.post("/graphql", json={"query": register, "variables": {"e": email, "p": password}})
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    answer = await http.post(
        "/graphql", json={"query": login, "variables": {"e": email, "p": password}}
    )
    token: str = answer.json()["data"]["login"]["accessToken"]
    return token


async def measure(base_url: str, *, clients: int, seconds: float) -> list[Figures]:
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench password 123"
    async with httpx.AsyncClient(base_url=base_url) as http:
        token = await _token(http, email, password)
    headers = {"authorization": f"Bearer {token}"}

    async def me(http: httpx.AsyncClient) -> bool:
        answer = await http.post("/graphql", json=ME, headers=headers)
        return answer.status_code == 200 and "errors" not in answer.json()

    login_body = {
        "query": "mutation($e: String!, $p: String!) "
        "{ login(email: $e, password: $p) { accessToken } }",
        "variables": {"e": email, "p": password},
    }

    async def login(http: httpx.AsyncClient) -> bool:
        answer = await http.post("/graphql", json=login_body)
        return answer.status_code == 200 and "errors" not in answer.json()

    return [
        await run("me", me, base_url=base_url, clients=clients, seconds=seconds),
        await run("login (argon2)", login, base_url=base_url, clients=clients, seconds=seconds),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    env = {
        "TG_LOGIN_RATE_LIMIT": "1000000/minute",
        "TG_MUTATION_RATE_LIMIT": "1000000/minute",
    }
    postgres, redis = os.environ.get("TG_BENCH_POSTGRES"), os.environ.get("TG_BENCH_REDIS")
    with tempfile.TemporaryDirectory() as tmp:
        if postgres:
            env |= {"TG_DATABASE_URL": postgres, "TG_REDIS_URL": redis or ""}
        else:
            env |= {"TG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db", "TG_REDIS_URL": ""}
        mode = "postgres+redis" if postgres else "embedded sqlite"
        with server(env) as base_url:
            figures = asyncio.run(measure(base_url, clients=args.clients, seconds=args.seconds))
    print(f"accounts benchmark, one server process, {mode}, {args.clients} clients")  # noqa: T201
    for figure in figures:
        print(figure.line())  # noqa: T201


if __name__ == "__main__":
    main()
