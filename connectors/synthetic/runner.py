"""Start the synthetic Polygon-protocol server as a separate process and wait until it listens."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from schemas.errors import ServiceError


@dataclass(frozen=True)
class RunningServer:
    ws_url: str
    rest_url: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def synthetic_server(args: list[str], timeout_s: float = 60.0) -> Iterator[RunningServer]:
    """``args`` are connectors.synthetic.server arguments (--date, --api-key, ...)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.synthetic.server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None  # noqa: S101 (Popen with PIPE)
        deadline = time.monotonic() + timeout_s
        line = process.stdout.readline()
        while not line.startswith("READY"):
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read() if process.stderr else ""
                raise ServiceError(f"synthetic server did not start: {line}{err[-2000:]}")
            line = process.stdout.readline()
        _, ws_url, rest_url = line.split()
        yield RunningServer(ws_url, rest_url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
