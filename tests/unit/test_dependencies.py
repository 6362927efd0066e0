"""Declared dependencies match what the code imports, and the lock pins every one of them."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"scalp", "kafkaio", "execution", "schemas", "connectors", "sinks", "streams", "backtest",
               "benchmarks", "scalp_config", "tests", "config", "scalp_build_backend"}  # fmt: skip


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _name(requirement: str) -> str:
    return _norm(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    return runtime, dev


def _imports(folders: list[str]) -> dict[str, str]:
    """Top-level third-party modules imported by the code in ``folders`` -> a file importing it."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def _distributions(modules: dict[str, str]) -> dict[str, str]:
    mapping = packages_distributions()
    out = {}
    for module, where in modules.items():
        dists = mapping.get(module)
        assert dists, f"{module} (imported by {where}) is not installed by any declared distribution"
        out[_norm(dists[0])] = where
    return out


def test_every_import_of_the_package_is_a_declared_runtime_dependency() -> None:
    runtime, _ = _declared()
    code = ["scalp", "kafkaio", "execution", "schemas", "connectors", "sinks", "streams", "backtest", "config"]
    used = _distributions(_imports(code))
    undeclared = {d: where for d, where in used.items() if d not in runtime}
    assert undeclared == {}, f"imported but not declared in [project] dependencies: {undeclared}"


def test_every_import_of_the_tests_and_benchmarks_is_declared() -> None:
    runtime, dev = _declared()
    used = _distributions(_imports(["tests", "benchmarks"]))
    undeclared = {d: where for d, where in used.items() if d not in runtime | dev}
    assert undeclared == {}, f"imported but not declared (dev extra): {undeclared}"


def test_the_locks_pin_every_declared_dependency_with_hashes() -> None:
    runtime, dev = _declared()
    for lock, names in (("requirements.lock", runtime), ("requirements-dev.lock", runtime | dev)):
        text = (REPO / lock).read_text()
        pinned = {_norm(m) for m in re.findall(r"^([A-Za-z0-9_.\-]+)==", text, flags=re.M)}
        assert names <= pinned, f"{lock} lacks {sorted(names - pinned)}: run ./run lock"
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert all("--hash=sha256:" in b for b in blocks if "==" in b), f"{lock}: a pin without hashes"


def test_the_runtime_lock_pins_what_the_tests_run() -> None:
    """The image installs requirements.lock, the tests run requirements-dev.lock: same version of every
    package both hold (a different python-dateutil once made the installed demo's features differ)."""

    def pins(lock: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", (REPO / lock).read_text(), flags=re.M):
            found.setdefault(_norm(name), set()).add(version)
        return found

    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    differing = {name: (versions, dev.get(name)) for name, versions in runtime.items() if versions != dev.get(name)}
    assert differing == {}
