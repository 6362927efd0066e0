"""The compiled build (mypyc) of the hot path: what it compiles, with which mypy, and which build runs here.

The suite runs against the checkout (pure Python) and, for the strategy, execution and replay tests, against
a compiled copy (tests/integration/test_compiled.py sets SCALP_EXPECT_BUILD=compiled there)."""

from __future__ import annotations

import ast
import os
import re
import sys
from importlib.util import find_spec
from pathlib import Path

from scalp.build import COMPILED_MODULES, compiled_modules, describe

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra" / "packaging"))


def test_the_build_that_runs_is_the_one_expected() -> None:
    if os.environ.get("SCALP_EXPECT_BUILD") == "compiled":
        assert compiled_modules() == list(COMPILED_MODULES)
        assert describe() == f"compiled with mypyc: {len(COMPILED_MODULES)} of {len(COMPILED_MODULES)} hot-path modules"
    else:
        assert compiled_modules() == []
        assert describe() == "pure Python"


def test_every_compiled_module_exists_and_defines_no_pydantic_model() -> None:
    for name in COMPILED_MODULES:
        assert find_spec(name) is not None
        tree = ast.parse((REPO / (name.replace(".", "/") + ".py")).read_text())
        bases = [ast.unparse(b) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for b in node.bases]
        # mypyc cannot compile a pydantic model (execution.settings holds the paper broker's settings for that)
        assert not any("BaseModel" in b or "BaseSettings" in b for b in bases), name


def test_the_compiled_build_asks_for_the_mypy_the_checks_use(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import scalp_build_backend as backend

    locked = re.search(r"^mypy==([\w.]+)", (REPO / "requirements-dev.lock").read_text(), re.MULTILINE)
    assert locked is not None
    monkeypatch.delenv("SCALP_COMPILE", raising=False)
    assert backend.get_requires_for_build_wheel() == ["wheel"]
    monkeypatch.setenv("SCALP_COMPILE", "1")
    assert backend.get_requires_for_build_wheel() == ["wheel", f"mypy=={locked.group(1)}"]
    assert backend.get_requires_for_build_editable() == ["wheel", f"mypy=={locked.group(1)}"]
