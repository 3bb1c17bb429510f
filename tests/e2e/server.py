"""The real `tradegraph` process, started and stopped the way an operator would do it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pytest

from app.migrate import upgrade_async

Mode = Literal["embedded", "production"]
HOST = "127.0.0.1"
# Alone a server is up within 2 s; on a machine busy with other work, importing takes longer.
STARTUP_SECONDS = 60.0
SHUTDOWN_SECONDS = 10.0
CLI_SECONDS = 60.0

_SCRIPT = Path(sys.executable).with_name("tradegraph")
# The installed entry point is what operators run; `-m app.cli` is the same code without it.
TRADEGRAPH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "app.cli"]


def server_env(
    *, database_url: str, redis_url: str | None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The caller's environment without any `TG_*` variable, plus the test configuration."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TG_")}
    env.update(
        {
            "TG_ENVIRONMENT": "test",
            "TG_DATABASE_URL": database_url,
            "TG_LOGIN_RATE_LIMIT": "5/minute",
            # The tests' clients name their own addresses (client.py), as a proxy would.
            "TG_TRUSTED_PROXIES": HOST,
            "TG_MUTATION_RATE_LIMIT": "10000/minute",
            "TG_ACCESS_TOKEN_MINUTES": "5",
            "TG_REFRESH_TOKEN_DAYS": "1",
            "TG_LOG_LEVEL": "INFO",
            "TG_GRAPHIQL": "false",
        }
    )
    if redis_url is not None:
        env["TG_REDIS_URL"] = redis_url
    env.update(overrides or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path, seconds: float = CLI_SECONDS
) -> CliResult:
    """Run one `tradegraph` command to its end; the working directory keeps `.env` files out."""
    process = await asyncio.create_subprocess_exec(
        *TRADEGRAPH,
        *args,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.communicate()
        pytest.fail(f"`tradegraph {' '.join(args)}` did not finish within {seconds} s")
    assert process.returncode is not None
    return CliResult(process.returncode, stdout.decode(), stderr.decode())


async def migrate(env: Mapping[str, str], cwd: Path, *, cli: bool = False) -> None:
    """Bring the servers' database to the newest schema. With `cli`, through `tradegraph
    migrate` as an operator would (the embedded servers do); otherwise in this process, which
    saves a second start of the application's imports for every database a test makes."""
    if not cli:
        await upgrade_async(env["TG_DATABASE_URL"])
        return
    result = await run_cli("migrate", env=env, cwd=cwd)
    if result.returncode != 0:
        pytest.fail(f"`tradegraph migrate` failed ({result.returncode}):\n{result.stderr}")


@dataclass
class Server:
    mode: Mode
    base_url: str
    ws_url: str
    process: asyncio.subprocess.Process
    env: dict[str, str]
    workdir: Path
    output: bytearray = field(default_factory=bytearray, repr=False)
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    def logs(self) -> str:
        return self.output.decode(errors="replace")

    async def wait_ready(self, seconds: float = STARTUP_SECONDS) -> None:
        """Poll /health until it answers; fail with the server's own output if it never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with httpx.AsyncClient(timeout=1.0) as client:
            while loop.time() < deadline:
                if self.process.returncode is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base_url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        await self.stop()
        pytest.fail(
            f"the {self.mode} server did not become healthy within {seconds} s "
            f"(exit code {self.process.returncode}); its output:\n{self.logs()}",
            pytrace=False,
        )

    async def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
        await terminate(self.process)
        if self._drain is not None:
            await self._drain


async def terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if the process lingers past SHUTDOWN_SECONDS."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), SHUTDOWN_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
    # Reading continuously keeps the pipe from filling up and stalling the server's logging.
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def launch(env: Mapping[str, str], *, mode: Mode, workdir: Path) -> Server:
    """Start `tradegraph serve` on a free port and return once /health answers."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *TRADEGRAPH,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        env=dict(env),
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    server = Server(
        mode=mode,
        base_url=f"http://{HOST}:{port}",
        ws_url=f"ws://{HOST}:{port}/graphql",
        process=process,
        env=dict(env),
        workdir=workdir,
    )
    server._drain = asyncio.create_task(_drain(process.stdout, server.output))
    await server.wait_ready()
    return server


@contextlib.asynccontextmanager
async def worker_process(server: Server) -> AsyncIterator[None]:
    """`tradegraph worker` beside `server`, with its configuration; it must stop cleanly."""
    worker = await asyncio.create_subprocess_exec(
        *TRADEGRAPH,
        "worker",
        env=server.env,
        cwd=server.workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield
    finally:
        worker.terminate()
        _, stderr = await asyncio.wait_for(worker.communicate(), 15)
    assert worker.returncode == 0, stderr.decode()
