from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what a copy of the checkout leaves out: local state, caches and build output (compiled modules included)
JUNK = (".git", ".venv", ".scalp", "runs", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
        ".ruff_cache", ".pytest_cache", ".hypothesis", "*.so")  # fmt: skip

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def compiled_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the image builds (SCALP_COMPILE=1: the hot path compiled with mypyc), from a copy of the
    sources, by pip in an isolated build environment (its build tools fetched as a user's pip would). Built once
    per test run: the first xdist worker that needs it builds it, another waits for it and takes it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's base directory, above each worker's own
    work = shared / "wheel"
    with open(shared / "wheel.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = sorted((work / "dist").glob("scalp_pipeline-*.whl"))
        if built:
            return built[0]
        shutil.rmtree(work, ignore_errors=True)  # a build that failed half-way
        src = work / "src"
        junk = shutil.ignore_patterns(*JUNK, "tests")
        shutil.copytree(REPO, src, ignore=junk)
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        env = {**os.environ, "SCALP_COMPILE": "1"}
        dist = work / "dist-partial"
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(src)], check=True, cwd=work, env=env)
        dist.rename(work / "dist")
        (wheel,) = (work / "dist").glob("scalp_pipeline-*.whl")
        return wheel


@pytest.fixture(scope="session")
def installed_scalp(compiled_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `scalp` of the compiled wheel, installed with the locked runtime dependencies into a virtualenv of
    its own, outside the checkout."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    venv_pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*venv_pip, "install", "--require-hashes", "-r", str(REPO / "requirements.lock")], check=True)
    subprocess.run([*venv_pip, "install", "--no-deps", str(compiled_wheel)], check=True)
    return venv / "bin" / "scalp"
