"""A compiled copy of the checkout for the benchmarks: the sources copied under the state dir and their hot
path built in place with mypyc (``SCALP_COMPILE=1 setup.py build_ext --inplace``), so a benchmark can run the
same code pure and compiled side by side. A copy whose sources did not change is reused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from kafkaio.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("backtest", "benchmarks", "config", "connectors", "execution", "kafkaio", "scalp", "schemas", "sinks",
            "streams")  # fmt: skip
FILES = ("pyproject.toml", "setup.py")


def _sources() -> list[Path]:
    found = [REPO / f for f in FILES]
    for package in PACKAGES:
        found += sorted(p for p in (REPO / package).rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".avsc"))
    return found


def source_hash() -> str:
    h = hashlib.sha256()
    for path in _sources():
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compiled_copy(work: Path) -> Path:
    """``work``/<source hash>: the checkout's packages with the hot path compiled (built on first use, about
    a minute or two; needs mypy from the dev extras and a C compiler)."""
    if not (REPO / "setup.py").exists():
        raise ConfigError("the compiled side by side runs from a checkout (setup.py builds it); use --no-compiled")
    key = source_hash()
    copy = work / key
    if (copy / ".built").exists():
        return copy
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise ConfigError("the compiled build needs mypy (pip install the dev extras) and a C compiler") from None
    shutil.rmtree(copy, ignore_errors=True)
    for path in _sources():
        target = copy / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    env = {**os.environ, "SCALP_COMPILE": "1"}
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=copy, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if build.returncode != 0:
        raise ConfigError(f"the compiled build failed (exit {build.returncode}): {build.stderr.strip()[-2000:]}")
    (copy / ".built").write_text(key)
    return copy


def run_in(where: Path | None, module: str, *args: str) -> Any:
    """``python -m module args`` in a fresh interpreter on the checkout (``where`` None) or a compiled copy;
    the JSON it prints last."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=where or REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(where or REPO)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
