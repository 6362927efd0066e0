"""PGlite with TimescaleDB (WASM) as a local server for the compatibility checks (one connection at a time,
no COPY FROM STDIN, no background jobs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PGLITE = Path(__file__).resolve().parents[2] / "infra" / "pglite"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/compat" in str(item.fspath):
            item.add_marker(pytest.mark.compat)


@pytest.fixture(scope="module")
def timescale_dsn() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (PGLITE / "node_modules" / "@unni-craftsman" / "pglite").exists():
        pytest.fail("PGlite TimescaleDB is not installed: run ./run setup (needs node and npm)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [node, "server.mjs", str(port)], cwd=PGLITE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while not line.startswith("READY") and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"PGlite server exited: {line}{proc.stdout.read()}")
            line = proc.stdout.readline()
        yield f"postgresql://postgres:any@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
