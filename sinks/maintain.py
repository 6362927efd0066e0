"""`scalp db maintain`: tick retention with a minute-bar rollup and an optional Parquet archive first,
partition upkeep (plain PostgreSQL, pg_partman) or compression (TimescaleDB).

Order, per run: roll trades older than the cutoff into ``bars_1m`` (aggregated_from='trades_rollup'),
archive the ticks about to go (sinks/archive.py: Hive-style typed Parquet, a part per table, symbol and New
York date; each file's row count is checked against the table before anything is dropped), then drop them.
The cutoff is midnight in New York, so whole sessions go.
A dry run reports what would happen and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import psycopg
import yaml
from psycopg import sql
from scalp_config import default

from kafkaio.errors import ConfigError
from schemas.topics import MARKET_QUOTES, MARKET_TRADES

from .archive import NEW_YORK, archive
from .settings import DatabaseSettings
from .transient import retry_transient

log = logging.getLogger(__name__)
TICK_TABLES = (MARKET_TRADES, MARKET_QUOTES)
CONDITIONS_FILE = default("trade_conditions.yaml")  # packaged with scalp (scalp_config)


@cache
def excluded_codes(path: Path = CONDITIONS_FILE) -> tuple[list[int], list[int]]:
    """(codes that may not set OHLC, codes that do not count in volume), from the condition table."""
    try:
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))["conditions"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a trade-condition table ({type(exc).__name__}: {exc})") from None
    no_price = sorted(int(k) for k, v in rules.items() if not (v["updates_high_low"] and v["updates_last"]))
    no_volume = sorted(int(k) for k, v in rules.items() if not v["updates_volume"])
    return no_price, no_volume


@dataclass
class MaintainReport:
    cutoff: dt.datetime
    flavour: str
    dry_run: bool
    rolled_up_bars: int = 0
    archived: dict[str, int] = field(default_factory=dict)  # file -> rows
    to_drop: dict[str, int] = field(default_factory=dict)  # table -> rows older than the cutoff
    dropped: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    compressed: int = 0


_ROLLUP = """
INSERT INTO bars_1m (symbol, ts, ts_ns, ts_end, o, h, l, c, v, vwap, trades, aggregated_from, ts_ingest)
SELECT symbol, minute, (extract(epoch FROM minute) * 1e9)::bigint, minute + interval '1 minute',
       (array_agg(price ORDER BY ts, seq) FILTER (WHERE price_ok))[1],
       max(price) FILTER (WHERE price_ok), min(price) FILTER (WHERE price_ok),
       (array_agg(price ORDER BY ts DESC, seq DESC) FILTER (WHERE price_ok))[1],
       coalesce(sum(size) FILTER (WHERE volume_ok), 0),
       sum(price * size) FILTER (WHERE volume_ok) / nullif(sum(size) FILTER (WHERE volume_ok), 0),
       count(*) FILTER (WHERE volume_ok), 'trades_rollup', now()
FROM (SELECT symbol, date_trunc('minute', ts) AS minute, ts, seq, price, size,
             NOT (conditions && %(no_price)s::int[]) AS price_ok,
             NOT (conditions && %(no_volume)s::int[]) AS volume_ok
      FROM market_trades WHERE ts < %(cutoff)s) t
GROUP BY symbol, minute
HAVING count(*) FILTER (WHERE price_ok) > 0
ON CONFLICT DO NOTHING
"""


def session_cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """Midnight in New York of the date ``retention_days`` before ``now``'s: whole sessions go (the evening of
    extended hours with its day), and each is archived in one piece."""
    day = now.astimezone(NEW_YORK).date() - dt.timedelta(days=retention_days)
    return dt.datetime.combine(day, dt.time(), tzinfo=NEW_YORK).astimezone(dt.UTC)


def flavour_of(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return "timescale" if row and row[0] else "plain"


def maintain(
    conn: psycopg.Connection,
    retention_days: int,
    archive_dir: Path | None,
    dry_run: bool,
    now: dt.datetime,
    conditions_file: Path = CONDITIONS_FILE,
) -> MaintainReport:
    """One maintenance pass (``now`` is the wall clock of the run; retention is about data age)."""
    cutoff = session_cutoff(now, retention_days)
    report = MaintainReport(cutoff, flavour_of(conn), dry_run)
    for table in TICK_TABLES:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE ts < %s").format(sql.Identifier(table)), (cutoff,)
        ).fetchone()
        report.to_drop[table] = int(row[0]) if row else 0
    no_price, no_volume = excluded_codes(conditions_file)
    params = {"cutoff": cutoff, "no_price": no_price, "no_volume": no_volume}
    if dry_run:
        row = conn.execute(
            "SELECT count(DISTINCT (symbol, date_trunc('minute', ts))) FROM market_trades WHERE ts < %s", (cutoff,)
        ).fetchone()
        report.rolled_up_bars = int(row[0]) if row else 0
        conn.rollback()
        return report

    def rollup() -> int:
        with conn.transaction():
            return conn.execute(_ROLLUP, params).rowcount

    report.rolled_up_bars = retry_transient(conn, "minute-bar rollup", rollup)
    if archive_dir is not None:
        for table in TICK_TABLES:
            report.archived.update(archive(conn, table, cutoff, archive_dir))
    for table in TICK_TABLES:
        # TimescaleDB's jobs (compression, aggregate refresh) lock the same chunks now and then: a deadlock
        # rolls the drop back whole and it is tried again
        report.dropped[table] = retry_transient(
            conn, f"dropping old {table}", partial(drop_older, conn, table, cutoff, report)
        )
    if report.flavour == "timescale":
        report.compressed = compress(conn)
    else:
        conn.execute("SELECT partman.run_maintenance()")
        conn.commit()
    return report


def drop_older(conn: psycopg.Connection, table: str, cutoff: dt.datetime, report: MaintainReport) -> int:
    """Remove rows older than the cutoff: whole partitions/chunks where possible, then the remainder."""
    dropped = 0
    partitions: list[str] = []
    if report.flavour == "timescale":
        chunks = conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)", (table, cutoff)).fetchall()
        partitions += [str(c[0]) for c in chunks]
    else:
        children = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
        for name, bound in children:
            upper = _upper_bound(conn, bound)
            if upper is not None and upper <= cutoff:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
                dropped += int(row[0]) if row else 0
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                partitions.append(name)
    cur = conn.execute(sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(table)), (cutoff,))
    dropped += max(cur.rowcount, 0)
    conn.commit()
    report.partitions += partitions  # only once the drop is committed
    return dropped


def _upper_bound(conn: psycopg.Connection, bound: str | None) -> dt.datetime | None:
    """The TO (...) value of a range partition bound, or None for the default partition."""
    if not bound or "TO (" not in bound:
        return None
    literal = bound.split("TO (", 1)[1].rsplit(")", 1)[0].strip().strip("'")
    row = conn.execute("SELECT %s::timestamptz", (literal,)).fetchone()
    return row[0] if row else None


def compress(conn: psycopg.Connection) -> int:
    """TimescaleDB: run the columnstore (compression) policies now; they also run on their own schedule, so
    one that fails here (a chunk the scheduler is converting at the same moment) is logged, not fatal."""
    jobs = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
    ).fetchall()
    conn.commit()
    for (job,) in jobs:
        try:
            conn.execute("CALL run_job(%s)", (job,))
            conn.commit()
        except psycopg.Error as exc:  # e.g. the scheduler compressing the same chunk at that moment
            conn.rollback()
            log.warning("columnstore job %s: %s; it runs again on its own schedule", job, str(exc).splitlines()[0])
    return len(jobs)


def maintain_database(
    database: DatabaseSettings,
    retention_days: int,
    archive_dir: Path | None,
    dry_run: bool,
    now: dt.datetime,
    conditions_file: Path = CONDITIONS_FILE,
) -> MaintainReport:
    """:func:`maintain` on a connection of its own."""
    from .db import connect

    with connect(database) as conn:
        return maintain(conn, retention_days, archive_dir, dry_run, now, conditions_file)
