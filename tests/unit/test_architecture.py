"""The layout's rules, read from the source (see docs/architecture.md): which way imports point, module size,
one error root, topic names from the catalog."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from schemas import topics
from schemas.catalog import catalog

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scalp", "kafkaio", "schemas", "execution", "connectors", "sinks", "streams", "backtest")
MAX_LINES = 450
IO_LIBRARIES = ("confluent_kafka", "aiokafka", "faust", "psycopg", "requests", "aiohttp", "websockets")


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).parent.parts
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(n for n in imported(path) if n.split(".")[0] in forbidden)
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_packages_never_import_the_shell() -> None:
    assert offenders(modules(*(p for p in PACKAGES if p != "scalp")), ("scalp",)) == {}


def test_the_strategy_core_and_the_execution_model_import_no_io_library() -> None:
    paths = modules("streams/core", "execution")
    assert offenders(paths, (*IO_LIBRARIES, "kafkaio.producer", "sinks", "connectors")) == {}
    # the error root is the only part of the Kafka layer they may use
    layer = {str(p): sorted(n for n in imported(p) if n.startswith("kafkaio")) for p in paths}
    assert {n for names in layer.values() for n in names} <= {"kafkaio.errors"}


def test_sinks_import_no_connectors_and_schemas_only_the_error_root_and_settings() -> None:
    assert offenders(modules("sinks"), ("connectors",)) == {}
    used = {n for p in modules("schemas") for n in imported(p) if n.startswith("kafkaio")}
    assert used <= {"kafkaio.errors", "kafkaio.settings"}


def test_every_kafka_client_is_built_in_the_kafka_layer() -> None:
    built = {}
    for path in modules(*(p for p in PACKAGES if p != "kafkaio")):
        tree = ast.parse(path.read_text())
        calls = [
            n.func.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("Consumer", "Producer")
        ]
        if calls:
            built[str(path.relative_to(ROOT))] = calls
    assert built == {}


def test_no_product_module_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules(*PACKAGES)}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_every_project_exception_derives_from_the_error_root() -> None:
    """A class whose bases include a built-in exception must also have one of ours (named ...Error)."""
    builtin = {"Exception", "ValueError", "AssertionError", "RuntimeError"}
    outside = []
    for path in modules(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            ours = {b for b in bases - builtin if b.endswith("Error")}
            if bases & builtin and not ours:
                outside.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert outside == ["kafkaio/errors.py:ScalpError"]


def test_topic_constants_are_the_catalog() -> None:
    assert set(topics.ALL) == {spec.name for spec in catalog()}
    assert len(topics.ALL) == len(set(topics.ALL))


@pytest.mark.parametrize("package", [p for p in (*PACKAGES, "benchmarks") if p != "schemas"])
def test_no_topic_name_literals_outside_the_catalog(package: str) -> None:
    names = set(topics.ALL)
    found = []
    for path in modules(package):
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type == tokenize.STRING and tok.string[:1] in "\"'" and tok.string[1:-1] in names:
                found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    assert found == []
