"""Local protocol servers run as separate processes: start one and wait for its READY line."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

from kafkaio.errors import ServiceError


@contextlib.contextmanager
def ready_server(
    module: str, args: list[str], timeout_s: float = 60.0
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``python -m module args`` until the block ends; yields the process and the words after READY."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None  # noqa: S101 (Popen with PIPE)
        deadline = time.monotonic() + timeout_s
        line = process.stdout.readline()
        while not line.startswith("READY"):
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read() if process.stderr else ""
                raise ServiceError(f"{module} did not start: {line}{err[-2000:]}")
            line = process.stdout.readline()
        yield process, line.split()[1:]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
