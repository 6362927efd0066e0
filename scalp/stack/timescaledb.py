"""TimescaleDB built from its release source against Debian's PostgreSQL (there is no Debian package).

``scalp stack timescaledb`` (run by ``./run``) builds it once: the tarball is ``stack.timescaledb_tarball``
(a path or URL), by default ``../shared/vendor/timescaledb-<version>.tar.gz`` next to the checkout when it
exists, else Timescale's release archive. Build: ``./bootstrap`` (CMake, release, no regression or TAP
checks, warnings not errors) against ``pg_config``, ``make -j<cores>``, ``make install``. ``make install``
writes into PostgreSQL's own library and extension directories (PostgreSQL 15 cannot load extensions from
a private prefix), so it needs root, as the Debian packages do. Cached: a version already installed there
is not built again; a new version is.

The cluster needs ``shared_preload_libraries = 'timescaledb'``: :class:`~scalp.stack.postgres.Postgres`
writes it when the library is installed and the stack's flavour is timescale.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kafkaio.errors import ServiceError

from .settings import REPO_ROOT, StackSettings

log = logging.getLogger(__name__)
RELEASE_URL = "https://github.com/timescale/timescaledb/archive/refs/tags/{version}.tar.gz"
BUILD_TOOLS = ("cmake", "make", "gcc")


class TimescaleBuild:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.version = settings.timescaledb_version
        self.pg_config = Path(f"/usr/lib/postgresql/{settings.postgres_major}/bin/pg_config")
        self.work = settings.state_dir / "timescaledb"

    def _pg(self, flag: str) -> Path:
        out = subprocess.run([str(self.pg_config), flag], capture_output=True, text=True, check=True).stdout
        return Path(out.strip())

    def installed(self) -> bool:
        """Whether this version's library and extension script are in PostgreSQL's directories."""
        if not self.pg_config.exists():
            return installed_version(self.settings.postgres_major) == self.version
        lib = self._pg("--pkglibdir") / f"timescaledb-{self.version}.so"
        script = self._pg("--sharedir") / "extension" / f"timescaledb--{self.version}.sql"
        return lib.exists() and script.exists()

    def source(self) -> str:
        """The tarball to build from (a path or a URL)."""
        if self.settings.timescaledb_tarball:
            return self.settings.timescaledb_tarball
        vendored = REPO_ROOT.parent / "shared" / "vendor" / f"timescaledb-{self.version}.tar.gz"
        return str(vendored) if vendored.exists() else RELEASE_URL.format(version=self.version)

    def missing_tools(self) -> list[str]:
        missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
        major = self.settings.postgres_major
        if not self.pg_config.exists() or not (self._pg("--includedir-server") / "postgres.h").exists():
            missing.append(f"PostgreSQL's server headers (postgresql-server-dev-{major})")
        return missing

    def ensure(self, report: Callable[[str], None] = lambda _: None) -> bool:
        """Build and install unless this version is installed; True when it built. ServiceError names the
        step that failed (and the log holding its output)."""
        if self.installed():
            return False
        missing = self.missing_tools()
        if missing:
            raise ServiceError(
                f"cannot build TimescaleDB {self.version}: missing {', '.join(missing)} "
                f"(apt-get install cmake gcc make postgresql-server-dev-{self.settings.postgres_major})"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        tarball = self._fetch(report)
        tree = self._extract(tarball)
        log_path = self.work / f"build-{self.version}.log"
        started = time.monotonic()
        cores = str(os.cpu_count() or 2)
        with open(log_path, "w", encoding="utf-8") as build_log:
            steps = [
                ("configure", ["./bootstrap", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DWARNINGS_AS_ERRORS=OFF",
                               "-DCMAKE_BUILD_TYPE=Release", f"-DPG_CONFIG={self.pg_config}"], tree),
                ("compile", ["make", "-j", cores], tree / "build"),
                ("install", ["make", "install"], tree / "build"),
            ]  # fmt: skip
            for step, argv, cwd in steps:
                report(f"timescaledb {self.version}: {step}")
                build_log.write(f"\n$ {' '.join(argv)}\n")
                build_log.flush()
                proc = subprocess.run(argv, cwd=cwd, stdout=build_log, stderr=subprocess.STDOUT, check=False)
                if proc.returncode != 0:
                    raise ServiceError(
                        f"TimescaleDB {self.version} failed to {step} (exit {proc.returncode}); see {log_path}"
                    )
        if not self.installed():
            raise ServiceError(f"TimescaleDB {self.version} built, but its files are not installed; see {log_path}")
        report(f"timescaledb {self.version}: installed in {time.monotonic() - started:.0f} s")
        shutil.rmtree(tree, ignore_errors=True)
        return True

    def _fetch(self, report: Callable[[str], None]) -> Path:
        source = self.source()
        if "://" not in source:
            path = Path(source)
            if not path.is_file():
                raise ServiceError(f"TimescaleDB tarball not found: {path} (stack.timescaledb_tarball)")
            return path
        target = self.work / f"timescaledb-{self.version}.tar.gz"
        if not target.exists():
            report(f"timescaledb {self.version}: downloading {source}")
            partial = target.with_suffix(".part")
            try:
                with urllib.request.urlopen(source, timeout=60) as reply, open(partial, "wb") as out:  # noqa: S310
                    shutil.copyfileobj(reply, out)
            except OSError as exc:
                raise ServiceError(f"cannot download TimescaleDB from {source}: {exc}") from None
            partial.rename(target)
        return target

    def _extract(self, tarball: Path) -> Path:
        dest = self.work / "src"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(dest, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ServiceError(f"{tarball} is not a readable tarball: {exc}") from None
        roots = [p for p in dest.iterdir() if p.is_dir()]
        if len(roots) != 1 or not (roots[0] / "bootstrap").exists():
            raise ServiceError(f"{tarball} does not hold a TimescaleDB source tree (no bootstrap script)")
        return roots[0]


def installed_version(major: int) -> str | None:
    """The TimescaleDB version whose extension control file is installed for PostgreSQL ``major``."""
    control = Path(f"/usr/share/postgresql/{major}/extension/timescaledb.control")
    try:
        for line in control.read_text(encoding="utf-8").splitlines():
            if line.startswith("default_version"):
                return line.split("=", 1)[1].strip().strip("'\"")
    except OSError:
        return None
    return None


def library_installed(major: int) -> bool:
    version = installed_version(major)
    return version is not None and Path(f"/usr/lib/postgresql/{major}/lib/timescaledb-{version}.so").exists()
