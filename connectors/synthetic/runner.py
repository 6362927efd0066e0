"""Start the synthetic Polygon-protocol server as a separate process and wait until it listens."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from connectors.process import ready_server


@dataclass(frozen=True)
class RunningServer:
    ws_url: str
    rest_url: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def synthetic_server(args: list[str], timeout_s: float = 60.0) -> Iterator[RunningServer]:
    """``args`` are connectors.synthetic.server arguments (--date, --api-key, ...)."""
    with ready_server("connectors.synthetic.server", args, timeout_s) as (process, (ws_url, rest_url)):
        yield RunningServer(ws_url, rest_url, process)
