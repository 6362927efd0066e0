"""A private PostgreSQL cluster from Debian's packages on 127.0.0.1:<postgres_port>.

Its flavour (``stack.db_flavour``): ``timescale`` preloads TimescaleDB when its library is installed (built
by ``scalp stack timescaledb``); ``plain`` (or timescale without the library: warned) runs PostgreSQL with
pg_partman. The choice is written to ``scalp-flavour.conf`` in the data directory at every start (with
``scalp.flavour``, which the migrations read), and a running server whose flavour changed is restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import subprocess
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql

from .base import ProcessService, ServiceStatus
from .procs import ensure_port_free, is_process_of, wait_until
from .secure import DB_ROLES, SecureFiles
from .settings import StackSettings
from .timescaledb import installed_version, library_installed

logger = logging.getLogger(__name__)

_RUN_AS = "postgres"  # the server refuses to run as root; Debian's package creates this user
_CONF = """
# written by scalp stack
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{sockets}'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
log_min_messages = warning
include_if_exists = 'scalp-flavour.conf'
"""
# the secured cluster: TLS with the stack's certificate, scram-sha-256 for everyone (no trust anywhere), its
# socket for the server's own user only
_SECURE_CONF = """
# written by scalp stack (secured)
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
unix_socket_permissions = 0700
"""
_SECURE_HBA = """# written by scalp stack (secured): passwords (scram-sha-256) only, and TCP only over TLS
local   all all                scram-sha-256
hostssl all all 127.0.0.1/32   scram-sha-256
hostssl all all ::1/128        scram-sha-256
"""
_FLAVOUR_CONF = {
    "timescale": "# written by scalp stack at every start\nshared_preload_libraries = 'timescaledb'\n"
    "timescaledb.telemetry_level = off\nmax_worker_processes = 24\ntimescaledb.max_background_workers = 8\n"
    "scalp.flavour = 'timescale'\n",
    "plain": "# written by scalp stack at every start\nscalp.flavour = 'plain'\n",
}


class Postgres(ProcessService):
    name = "postgres"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings, "postgres-secure" if settings.secure else "postgres")
        self.files = SecureFiles(settings.state_dir)
        self.data = self.home / "data"
        self.sockets = self.home / "run"
        self.pid_file = self.data / "postmaster.pid"  # the server's own pid file (first line: pid)

    @property
    def bindir(self) -> Path:
        return Path(f"/usr/lib/postgresql/{self.settings.postgres_major}/bin")

    def dsn(self, db: str | None = None, role: str | None = None) -> str:
        """The URL of ``db`` (default the pipeline's) as ``role`` (default the cluster's superuser). Secured:
        with the role's password, over TLS verified against the stack's CA."""
        s = self.settings
        db = db or s.postgres_db
        if not s.secure:
            return f"postgresql://{role or s.postgres_user}@{s.host}:{s.postgres_port}/{db}"
        role = role or s.postgres_user
        password = quote(self.files.db_password(role), safe="")
        query = urlencode({"sslmode": "verify-full", "sslrootcert": str(self.files.ca)})
        return f"postgresql://{role}:{password}@{s.host}:{s.postgres_port}/{db}?{query}"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", _RUN_AS, "--", *argv]

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise self._fail(f"{Path(argv[0]).name} failed: {(proc.stderr or proc.stdout).strip()}")

    def prepare(self) -> None:
        major = self.settings.postgres_major
        if not (self.bindir / "postgres").exists():
            raise self._fail(
                f"PostgreSQL {major} server not found in {self.bindir}; "
                f"install postgresql-{major} postgresql-{major}-partman"
            )
        if not Path(f"/usr/share/postgresql/{major}/extension/pg_partman.control").exists():
            raise self._fail(f"pg_partman not found; install postgresql-{major}-partman")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(_RUN_AS)
            except KeyError:
                raise self._fail(
                    f"running as root needs the '{_RUN_AS}' system user (created by Debian's postgresql-common)"
                ) from None
        self.sockets.mkdir(parents=True, exist_ok=True)
        if (self.data / "PG_VERSION").exists():
            self._chown()
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self._chown()
        auth = ["--auth=trust"]
        pwfile = self.home / "initdb.pw"
        if self.settings.secure:
            self.files.ensure()
            self._private_copy(self.files.db_password(self.settings.postgres_user).encode(), pwfile)
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.settings.postgres_user,
                    *auth,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(_CONF.format(host=self.settings.host, port=self.settings.postgres_port, sockets=self.sockets))
            if self.settings.secure:
                conf.write(_SECURE_CONF)
        if self.settings.secure:
            (self.data / "pg_hba.conf").write_text(_SECURE_HBA, encoding="utf-8")
            self._private_copy(self.files.cert.read_bytes(), self.data / "server.crt")
            self._private_copy(self.files.key.read_bytes(), self.data / "server.key")

    def _private_copy(self, data: bytes, path: Path) -> None:
        """``data`` in a file only the server's user may read (it refuses a key others can read)."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if os.geteuid() == 0:
            user = pwd.getpwnam(_RUN_AS)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _chown(self) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam(_RUN_AS)
        for path in (self.home, self.data, self.sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.data, 0o700)
        self.home.chmod(0o755)
        # the server user must be able to traverse down to the data directory
        for parent in self.home.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                with contextlib.suppress(PermissionError):
                    parent.chmod(mode | 0o001)

    @property
    def flavour(self) -> str:
        """The flavour the cluster runs: timescale only when asked for and the library is installed."""
        if self.settings.db_flavour == "timescale" and library_installed(self.settings.postgres_major):
            return "timescale"
        return "plain"

    def _write_flavour(self) -> bool:
        """Write scalp-flavour.conf; True when it changed."""
        conf = self.data / "postgresql.conf"
        text = conf.read_text(encoding="utf-8")
        if "scalp-flavour.conf" not in text:  # a cluster initialised before flavours existed
            conf.write_text(text + "include_if_exists = 'scalp-flavour.conf'\n", encoding="utf-8")
        if self.settings.db_flavour == "timescale" and self.flavour != "timescale":
            logger.warning(
                "TimescaleDB %s is not installed: the local PostgreSQL runs plain (pg_partman); "
                "`./run setup` (or `scalp stack timescaledb`) builds it", self.settings.timescaledb_version
            )  # fmt: skip
        path = self.data / "scalp-flavour.conf"
        wanted = _FLAVOUR_CONF[self.flavour]
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == wanted:
            return False
        path.write_text(wanted, encoding="utf-8")
        if os.geteuid() == 0:
            user = pwd.getpwnam(_RUN_AS)
            os.chown(path, user.pw_uid, user.pw_gid)
        return True

    def _answers(self, db: str = "postgres") -> bool:
        try:
            with psycopg.connect(self.dsn(db), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def start(self) -> bool:
        changed = self._write_flavour()
        if self.pid() is not None and self._answers():
            if not changed:
                return False
            logger.warning("PostgreSQL flavour changed to %s: restarting the local server", self.flavour)
            self.stop()
        ensure_port_free(self.name, self.settings.host, self.settings.postgres_port)
        log = self.home / "server.log"
        if os.geteuid() == 0:
            log.touch()
            user = pwd.getpwnam(_RUN_AS)
            os.chown(log, user.pw_uid, user.pw_gid)
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "120", "start"])
        wait_until(self.name, self._answers, self.settings.start_timeout_s, self._alive, log)
        self._ensure_databases()
        return True

    def _ensure_databases(self) -> None:
        owners: dict[str, str | None] = {self.settings.postgres_db: None, "apicurio": None}
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if self.settings.secure:
                self._ensure_roles(conn)
                owners = {self.settings.postgres_db: "scalp_owner", "apicurio": "apicurio"}
            for db, owner in owners.items():
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
                if not exists:
                    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db))
                    if owner is not None:
                        statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
                    conn.execute(statement)
        if self.settings.secure:  # extensions need a superuser: made here, so the owner's migrations find them
            extension = "timescaledb" if self.flavour == "timescale" else "pg_partman"
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                if extension == "pg_partman":
                    conn.execute("CREATE SCHEMA IF NOT EXISTS partman AUTHORIZATION scalp_owner")
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman")
                else:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    def _ensure_roles(self, conn: psycopg.Connection) -> None:
        """The secured cluster's login roles with their generated passwords (the owner may create the group
        roles of migration 0012 and grant them)."""
        for role in DB_ROLES:
            if role == self.settings.postgres_user:
                continue
            password = self.files.db_password(role)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            extra = " CREATEROLE" if role == "scalp_owner" else ""
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN" + extra + " PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        return True

    def pid(self) -> int | None:
        # postmaster.pid holds more than the pid; read its first line only
        try:
            first = self.pid_file.read_text().splitlines()[0]
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        # a postmaster.pid left by a crash can name a pid reused by another process since: ours is
        # `postgres -D <our data dir>` (pg_ctl stop would signal whatever the file names)
        return pid if is_process_of(pid, "postgres", str(self.data)) else None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = pid is not None and self._answers()
        return ServiceStatus(
            self.name,
            pid is not None,
            healthy,
            pid,
            f"{self.settings.host}:{self.settings.postgres_port}",
            f"database {self.settings.postgres_db}, {self._flavour_detail() if healthy else self.flavour}",
        )

    def _flavour_detail(self) -> str:
        """What the running server is: TimescaleDB (preloaded, its version) or plain PostgreSQL."""
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        except psycopg.Error:
            return self.flavour
        if row and "timescaledb" in str(row[0]):
            return f"timescale (TimescaleDB {installed_version(self.settings.postgres_major)}, preloaded)"
        return "plain (PostgreSQL + pg_partman)"
