"""What identifies the code and configuration behind an output: source commit, env hash, policy digest.

``env_hash`` is the sha256 of the canonical JSON of the non-secret settings handed in (the shell passes
its settings with secrets removed); ``source_commit`` is ``SCALP_SOURCE_COMMIT`` when set (images built
without .git), else ``git rev-parse HEAD`` of this checkout with ``-dirty`` when it has uncommitted
changes, else ``unknown``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def env_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@cache
def source_commit() -> str:
    pinned = os.environ.get("SCALP_SOURCE_COMMIT")
    if pinned:
        return pinned
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


@dataclass(frozen=True, slots=True)
class Digests:
    """Stamped on every feature, signal and decision."""

    source_commit: str
    session_policy_digest: str
    env_hash: str
