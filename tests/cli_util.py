"""Running the CLI as a user does: a subprocess of the `scalp` entry point's module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from schemas.catalog import catalog

REPO = Path(__file__).resolve().parents[1]
# every catalog topic except risk_day (keyed by date, a small plain table) is partitioned on ts
TIME_TABLES = sorted(
    set(catalog().names()) - {"risk_day", "execution_control", "config_snapshots"}
)  # small tables: not time-partitioned


def scalp(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalp.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
