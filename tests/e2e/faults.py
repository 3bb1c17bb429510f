"""Processes a fault test may hurt: a private `redis-server` and a `tradegraph worker`.

The shared test Redis is never stopped: a test that kills, freezes or restarts Redis starts a
server of its own on a free port, keeping nothing on disk, so a restart comes back empty as
after a crash of a cache-only Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.conftest import unavailable
from tests.e2e.server import HOST, STARTUP_SECONDS, TRADEGRAPH, free_port, terminate


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self) -> None:
        """Start on `port` (the same one again after a kill) and return once it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", FileNotFoundError("redis-server is not on PATH"))
        assert binary is not None
        self.process = await asyncio.create_subprocess_exec(
            binary,
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.workdir)),
            *("--save", "", "--appendonly", "no"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_answering()

    async def _wait_answering(self) -> None:
        client = aioredis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
        try:
            while True:
                with contextlib.suppress(RedisError, OSError):
                    if await client.ping():
                        return
                assert self.process is not None
                if self.process.returncode is not None:
                    pytest.fail(f"redis-server exited ({self.process.returncode})")
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"redis-server did not answer within {STARTUP_SECONDS} s")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: gone at once, its connections reset, nothing saved."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as on a stalled host."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        if self.frozen:
            self.thaw()
        await self.kill()


@dataclass
class WorkerProcess:
    """`tradegraph worker`, its output kept (and its pipe drained, so it never blocks)."""

    process: asyncio.subprocess.Process
    output: bytearray = field(default_factory=bytearray)
    _drain: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def logs(self) -> str:
        return self.output.decode(errors="replace")

    async def wait_for_log(self, text: str, seconds: float = 30.0) -> bool:
        """Wait until `text` appears in its output; False if the process ended first."""
        deadline = asyncio.get_running_loop().time() + seconds
        while text not in self.logs():
            if not self.running:
                return False
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"the worker never logged {text!r}; its output:\n{self.logs()}")
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> int:
        """SIGTERM, as an operator stops it; returns its exit code."""
        await terminate(self.process)
        if self._drain is not None:
            await self._drain
        assert self.process.returncode is not None
        return self.process.returncode


async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def start_worker(env: Mapping[str, str], workdir: Path) -> WorkerProcess:
    process = await asyncio.create_subprocess_exec(
        *TRADEGRAPH,
        "worker",
        env=dict(env),
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    worker = WorkerProcess(process)
    worker._drain = asyncio.create_task(_drain(process.stdout, worker.output))
    return worker
