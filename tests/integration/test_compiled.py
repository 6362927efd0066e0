"""The compiled build runs the strategy's own tests: a copy of the checkout with the compiled wheel's
extension modules next to their sources (an extension module is imported before a .py of the same name) runs
every unit test module that imports the strategy core, the execution model or the replay, plus the check that
the compiled modules are the ones loaded. The demo test replays a session on the compiled wheel and compares
its outputs with the pure checkout's, byte for byte (tests/integration/test_demo.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import JUNK, REPO

HOT = re.compile(
    r"^(?:from|import) (?:streams\.core|execution|backtest)\b|^from tests\.(?:streams|execution)_util", re.M
)


def strategy_tests() -> list[str]:
    """The unit test modules that exercise compiled code (they import it, or the helpers that drive it)."""
    found = [p for p in sorted((REPO / "tests" / "unit").glob("test_*.py")) if HOT.search(p.read_text())]
    return [str(p.relative_to(REPO)) for p in found] + ["tests/unit/test_build.py"]


@pytest.mark.timeout(2400)
def test_the_strategy_tests_pass_on_the_compiled_build(compiled_wheel: Path, tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*JUNK))
    with zipfile.ZipFile(compiled_wheel) as wheel:
        extensions = [n for n in wheel.namelist() if n.endswith(".so")]
        wheel.extractall(copy, members=extensions)
    assert len(extensions) > 1  # the modules and the library they share
    selected = strategy_tests()
    assert "tests/unit/test_features.py" in selected
    assert "tests/unit/test_guard.py" in selected
    env = {**os.environ, "SCALP_EXPECT_BUILD": "compiled"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected],
        cwd=copy, env=env, capture_output=True, text=True, timeout=2300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert re.search(r"\d+ passed", run.stdout)
    assert "skipped" not in run.stdout.splitlines()[-1]
