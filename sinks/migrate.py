"""Ordered SQL migrations, recorded in schema_migrations, idempotent.

Files are ``NNNN_name.sql`` (every database) and ``NNNN_name.<flavour>.sql`` where the flavour is
``timescale`` (the TimescaleDB extension is available: hypertables, compression, policies,
continuous aggregate) or ``plain`` (native range partitioning by day, managed by pg_partman).
``{{partition_by_ts}}`` in a file renders to the flavour's partitioning clause.

A file's checksum covers its SQL, not its comment lines (a line starting with ``--``): a comment can be
corrected after a migration was applied; any other change is refused. Databases migrated when the checksum
covered the whole text are accepted (their stored checksum is the whole text's, or one of
:data:`PREVIOUS_TEXTS` for files whose comments were corrected since) and their checksum is brought up to date.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from kafkaio.errors import ConfigError

from .settings import DatabaseSettings
from .transient import retry_transient

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
Flavour = Literal["timescale", "plain"]
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")
_LOCK_KEY = 0x5CA1_0001  # advisory lock: one migrator at a time

# sha256 of the whole text of files whose comments were corrected after release: (version, flavour) -> sha256
PREVIOUS_TEXTS = {
    ("0001", "timescale"): "10ba618f84be0b1403eeaca7f0cebffb749bb027a1a55c2aa0b7b10290356b14",
    ("0001", "plain"): "bc87ed112578abb63131ce67bf0b8d957dcb0b02f4cdc1f3817eb491ca1b995a",
    ("0002.timescale", "timescale"): "add9c90e782063cce00a305a8efee22976d02e9bc4923dcda18673e9f9a02494",
}
_TEMPLATE = {"timescale": {"partition_by_ts": ""}, "plain": {"partition_by_ts": "PARTITION BY RANGE (ts)"}}


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    def sql(self, flavour: Flavour) -> str:
        text = self.path.read_text(encoding="utf-8")
        for key, value in _TEMPLATE[flavour].items():
            text = text.replace("{{" + key + "}}", value)
        return text

    def checksum(self, flavour: Flavour) -> str:
        """sha256 of the SQL without its comment lines."""
        lines = [line for line in self.sql(flavour).splitlines() if not line.lstrip().startswith("--")]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def accepts(self, stored: str, flavour: Flavour) -> bool:
        """Whether a stored checksum is this file's: today's, or the whole-text checksum an earlier release
        recorded for the same SQL."""
        whole = hashlib.sha256(self.sql(flavour).encode()).hexdigest()
        return stored in (self.checksum(flavour), whole, PREVIOUS_TEXTS.get((self.version, flavour)))


def discover(flavour: Flavour, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations that apply to ``flavour``, in version order (common file before flavour file)."""
    found: list[tuple[str, int, Migration]] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ConfigError(f"{path}: migration file names must look like 0001_name[.timescale|.plain].sql")
        version, name, only = match.groups()
        if only is not None and only != flavour:
            continue
        found.append((version, 1 if only else 0, Migration(f"{version}{'.' + only if only else ''}", name, path)))
    return [m for _, _, m in sorted(found, key=lambda item: (item[0], item[1]))]


PRELOAD_FIX = (
    "set shared_preload_libraries = 'timescaledb' in postgresql.conf and restart the server (or, for plain "
    "PostgreSQL with pg_partman: ALTER DATABASE <db> SET scalp.flavour = 'plain', or scalp.flavour = 'plain' "
    "in postgresql.conf)"
)


def detect_flavour(conn: psycopg.Connection) -> Flavour:
    """The flavour of this database, in this order: what it was migrated as (schema_migrations); the
    ``scalp.flavour`` setting (per database, ``ALTER DATABASE .. SET scalp.flavour = 'plain'``, or in
    postgresql.conf, as the local stack writes it); else timescale when the extension is installed,
    otherwise plain. Installed extension files alone do not make a server TimescaleDB: the library must be
    preloaded, which :func:`migrate` checks when it creates the extension."""
    recorded = conn.execute(
        "SELECT flavour FROM schema_migrations LIMIT 1" if _has_migrations(conn) else "SELECT NULL WHERE false"
    ).fetchone()
    if recorded:
        return "timescale" if recorded[0] == "timescale" else "plain"
    row = conn.execute("SELECT current_setting('scalp.flavour', true)").fetchone()
    chosen = (row[0] or "").strip().lower() if row else ""
    if chosen in ("timescale", "plain"):
        return "timescale" if chosen == "timescale" else "plain"
    if chosen:
        raise ConfigError(f"scalp.flavour is {chosen!r}: use 'timescale' or 'plain'")
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescale" if row else "plain"


def _has_migrations(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def create_extension(conn: psycopg.Connection) -> None:
    """CREATE EXTENSION timescaledb, or a ConfigError saying exactly what to set when it is not preloaded."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        text = str(exc)
        if "preload" in text:
            raise ConfigError(f"TimescaleDB is installed but not preloaded: {PRELOAD_FIX}") from None
        raise ConfigError(f"CREATE EXTENSION timescaledb failed: {text.strip().splitlines()[0]}") from None


@dataclass(frozen=True)
class MigrateResult:
    flavour: Flavour
    applied: list[str]
    skipped: list[str]


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> MigrateResult:
    """Apply pending migrations on an autocommit connection; each file runs in its own transaction."""
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection")
    flavour = detect_flavour(conn)
    if flavour == "timescale":
        create_extension(conn)
    conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY, name text NOT NULL, flavour text NOT NULL, checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        done = {
            row[0]: (row[1], row[2])
            for row in conn.execute("SELECT version, checksum, flavour FROM schema_migrations").fetchall()
        }
        applied: list[str] = []
        skipped: list[str] = []
        for migration in discover(flavour, directory):
            checksum = migration.checksum(flavour)
            if migration.version in done:
                old_checksum, old_flavour = done[migration.version]
                if old_flavour != flavour:
                    raise ConfigError(f"database was migrated as {old_flavour}, now looks {flavour}")
                if not migration.accepts(old_checksum, flavour):
                    raise ConfigError(
                        f"migration {migration.path.name} changed after it was applied; add a new migration instead"
                    )
                if old_checksum != checksum:
                    conn.execute(
                        "UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, migration.version)
                    )
                skipped.append(migration.version)
                continue
            log.info("applying migration %s (%s)", migration.path.name, flavour)

            def apply(migration: Migration = migration, checksum: str = checksum) -> None:
                with conn.transaction():
                    conn.execute(migration.sql(flavour).encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES (%s, %s, %s, %s)",
                        (migration.version, migration.name, flavour, checksum),
                    )

            # TimescaleDB's background workers starting on a new database touch the catalog rows a
            # migration changes ("tuple concurrently deleted", seen in CI): the file is tried again whole
            retry_transient(conn, f"migration {migration.path.name}", apply)
            applied.append(migration.version)
        return MigrateResult(flavour, applied, skipped)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def require_migrated(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> None:
    """ConfigError unless every migration is applied (for processes that never migrate: they may not)."""
    done: set[str] = set()
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if row is not None and row[0] is not None:
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    missing = [m.version for m in discover(detect_flavour(conn), directory) if m.version not in done]
    if missing:
        raise ConfigError(f"the database lacks migrations {', '.join(missing)}: run `scalp db migrate` (as its owner)")


def migrate_database(database: DatabaseSettings) -> MigrateResult:
    """:func:`migrate` on a connection of its own."""
    from .db import connect

    with connect(database, autocommit=True) as conn:
        return migrate(conn)
