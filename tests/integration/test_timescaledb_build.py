"""`scalp stack timescaledb`: a tarball that is missing, unreadable or does not build is reported with the step
that failed (exit 1), and nothing is installed; the version the stack runs is installed and not rebuilt."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from scalp.stack.settings import StackSettings
from scalp.stack.timescaledb import TimescaleBuild, installed_version
from tests.cli_util import scalp

VERSION = "0.0.1-test"  # never installed: every run below would have to build it


def _run(tmp_path: Path, tarball: str) -> tuple[int, str]:
    config = tmp_path / "config.yaml"
    config.write_text(f"stack:\n  timescaledb_version: {VERSION}\n")
    env = {"SCALP_TIMESCALEDB_TARBALL": tarball, "SCALP_STATE_DIR": str(tmp_path / "state")}
    proc = scalp("--config", str(config), "stack", "timescaledb", env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_missing_tarball_is_named(tmp_path: Path) -> None:
    code, out = _run(tmp_path, str(tmp_path / "nowhere.tar.gz"))
    assert code == 1, out
    assert f"TimescaleDB tarball not found: {tmp_path / 'nowhere.tar.gz'}" in out


def test_an_unreadable_tarball_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    code, out = _run(tmp_path, str(junk))
    assert code == 1, out
    assert "is not a readable tarball" in out


def test_a_tree_that_fails_to_configure_names_the_step_and_its_log(tmp_path: Path) -> None:
    broken = _tarball(
        tmp_path / "broken.tar.gz",
        {"timescaledb-x/bootstrap": "#!/bin/sh\necho 'CMake Error: no PostgreSQL here' >&2\nexit 3\n"},
    )
    code, out = _run(tmp_path, str(broken))
    assert code == 1, out
    assert f"TimescaleDB {VERSION} failed to configure (exit 3)" in out, out
    log = tmp_path / "state" / "timescaledb" / f"build-{VERSION}.log"
    assert "CMake Error: no PostgreSQL here" in log.read_text()
    assert installed_version(15) != VERSION  # nothing of it was installed


def test_the_stack_version_is_installed_and_not_rebuilt() -> None:
    build = TimescaleBuild(StackSettings())
    assert build.installed(), "./run setup builds TimescaleDB before the tests"
    assert installed_version(15) == StackSettings().timescaledb_version
    assert build.ensure() is False  # cached: no build
