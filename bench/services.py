"""`tradegraph serve` and `tradegraph worker` processes for a bench, each logging to a file of
its own, watched for their memory and for an early exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from bench.load import ROOT, Request, fetch

TRADEGRAPH = str(Path(sys.executable).parent / "tradegraph")
# Generous: on a busy two-core machine an API process took over 30 s to import and start.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class Service:
    """One started process of the API or the worker."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._output: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            [TRADEGRAPH, *command],
            env={**os.environ, **env},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code once the process has ended by itself, else None."""
        return self.process.poll()

    def rss_bytes(self) -> int | None:
        """Resident memory now (Linux /proc), or None once the process is gone."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def error_lines(self) -> int:
        """Log lines at error level or above, and tracebacks (JSON logs or plain)."""
        count = 0
        with self.log.open("rb") as lines:
            for line in lines:
                lowered = line.lower()
                if (
                    b'"level": "error"' in lowered
                    or b'"level": "critical"' in lowered
                    or b'"level":"error"' in lowered
                    or line.startswith(b"Traceback")
                ):
                    count += 1
        return count

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()


def wait_healthy(service: Service, base_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if (code := service.exited()) is not None:
            raise RuntimeError(f"{service.name} exited with {code}: see {service.log}")
        try:
            fetch(base_url, Request("GET", "/health"))
            return
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} did not start: see {service.log}") from None
            time.sleep(0.1)


@contextmanager
def started(
    env: Mapping[str, str], *, ports: list[int], logs: Path, worker: bool = True
) -> Iterator[list[tuple[Service, str | None]]]:
    """One API process per port, then a worker: (process, base URL or None for the worker).
    Every process is stopped at the end."""
    with ExitStack() as stack:
        services: list[tuple[Service, str | None]] = []
        for n, port in enumerate(ports, 1):
            api = Service(f"api-{n}", ["serve", "--port", str(port)], env, logs / f"api-{n}.log")
            stack.callback(api.stop)
            services.append((api, f"http://127.0.0.1:{port}"))
        for api, url in services:
            assert url is not None
            wait_healthy(api, url)
        if worker:
            process = Service("worker", ["worker"], env, logs / "worker.log")
            stack.callback(process.stop)
            services.append((process, None))
        yield services
