"""Benchmark the account read path (`me`) and login against one real server process.

    .venv/bin/python -m bench.accounts            # embedded SQLite
    TG_BENCH_POSTGRES=postgresql+asyncpg://postgres@127.0.0.1:5432/tg_bench \
    TG_BENCH_REDIS=redis://127.0.0.1:6379/8 .venv/bin/python -m bench.accounts

Prints requests per second and latency percentiles for each operation, 10 concurrent clients.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid

from bench.load import Figures, fetch, graphql, run, server

ME = "{ me { id email displayName role } }"
REGISTER = (
    "mutation($e: String!, $p: String!) "
    '{ register(input: {email: $e, password: $p, displayName: "Bench"}) { id } }'
)
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"


def measure(base_url: str, *, clients: int, seconds: float) -> list[Figures]:
    credentials = {"e": f"bench-{uuid.uuid4().hex[:8]}@example.com", "p": "bench password 123"}
    fetch(base_url, graphql(REGISTER, credentials))
    answer = json.loads(fetch(base_url, graphql(LOGIN, credentials)))
    me = graphql(ME, headers={"authorization": f"Bearer {answer['data']['login']['accessToken']}"})
    login = graphql(LOGIN, credentials)
    return [
        run("me", me, base_url=base_url, clients=clients, seconds=seconds),
        run("login (argon2)", login, base_url=base_url, clients=clients, seconds=seconds),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    env = {
        "TG_LOGIN_RATE_LIMIT": "1000000/minute",
        "TG_LOGIN_ADDRESS_RATE_LIMIT": "1000000/minute",
        "TG_LOGIN_EMAIL_RATE_LIMIT": "1000000/minute",
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
            figures = measure(base_url, clients=args.clients, seconds=args.seconds)
    print(f"accounts benchmark, one server process, {mode}, {args.clients} clients")  # noqa: T201
    for figure in figures:
        print(figure.line())  # noqa: T201
    for figure in figures:
        # Server and load generator share two cores: one near a full core measures itself.
        cpu = f"{figure.name}: load generator used {figure.client_cpu:.0%} of one core"
        print(cpu if figure.errors == 0 else f"{cpu}; first error {figure.first_error}")  # noqa: T201


if __name__ == "__main__":
    main()
