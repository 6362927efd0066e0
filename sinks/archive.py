"""The Parquet archive of ticks past the tables' retention (written by `scalp db maintain --archive-dir`).

Layout, Hive-style so pandas, polars, duckdb and pyarrow read the partition columns from the paths:
``<dir>/<table>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/part-<N>.parquet``, where the date is the session's date
in New York (the evening of extended hours belongs to its day, not to the next UTC day). A file holds the
topic's records less ``symbol`` (in the path), typed from the topic's Avro schema: event times as
``timestamp[ns, UTC]`` (exact: from ``ts_ns``), money as ``decimal128``. Each maintenance run that archives
a (symbol, date) writes the next free part, so nothing already archived is overwritten; each file's row
count is checked against the table before anything is dropped.

The layout before this one (``<table>/<SYMBOL>/<UTC day>.parquet``, untyped) is rewritten into this one by
`scalp db archive-migrate` (:func:`migrate_legacy`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from kafkaio.errors import FatalError
from schemas.catalog import catalog
from schemas.topics import MARKET_QUOTES, MARKET_TRADES

log = logging.getLogger(__name__)
NEW_YORK = ZoneInfo("America/New_York")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PARTITIONS = ("symbol", "date")
MIGRATED = "part-migrated.parquet"  # what archive-migrate writes for a (symbol, date)


def session_date(ts_ns: int) -> dt.date:
    """The New York date of an event time."""
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, NEW_YORK).date()


def day_bounds(day: dt.date) -> tuple[int, int]:
    """[start, end) in UTC ns of a New York date (23 or 25 hours on the days the clocks change)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=NEW_YORK)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=NEW_YORK)
    return _ns(start), _ns(end)


def _ns(when: dt.datetime) -> int:
    return (when - EPOCH) // dt.timedelta(microseconds=1) * 1000


def record_of_row(row: dict[str, Any]) -> dict[str, Any]:
    """A tick table's row as the topic's record: ``ts`` from ``ts_ns`` (exact), other times in ns."""
    out = {}
    for name, value in row.items():
        if name == "ts":
            continue
        if name == "ts_ns":
            out["ts"] = value
        elif isinstance(value, dt.datetime):
            out[name] = _ns(value)
        else:
            out[name] = value
    return out


def partition_dir(root: Path, table: str, symbol: str, day: dt.date) -> Path:
    return root / table / f"symbol={symbol}" / f"date={day.isoformat()}"


def write_part(directory: Path, table: str, records: list[dict[str, Any]], name: str | None = None) -> Path:
    """Records of one (symbol, date) as the next free part of ``directory`` (or the file ``name``, replaced);
    the file is checked to hold them all before it takes its name."""
    import pyarrow.parquet as pq

    from schemas.arrow import arrow_schema, to_table

    directory.mkdir(parents=True, exist_ok=True)
    taken = {p.name for p in directory.glob("part-*.parquet")}
    free = (f"part-{n}.parquet" for n in range(len(taken) + 1) if f"part-{n}.parquet" not in taken)
    path = directory / (name or next(free))
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(to_table(records, arrow_schema(catalog()[table].schema, drop=PARTITIONS)), tmp)
    found = pq.read_metadata(tmp).num_rows
    if found != len(records):
        tmp.unlink(missing_ok=True)
        raise FatalError(f"archive {path}: {found} rows in the file, {len(records)} to write; nothing was dropped")
    tmp.replace(path)
    return path


def archive(conn: psycopg.Connection, table: str, cutoff: dt.datetime, root: Path) -> dict[str, int]:
    """Write the rows older than the cutoff, one part per symbol and New York date; return file -> rows."""
    days = conn.execute(
        sql.SQL(
            "SELECT symbol, (ts AT TIME ZONE 'America/New_York')::date, count(*) FROM {} "
            "WHERE ts < %s GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(sql.Identifier(table)),
        (cutoff,),
    ).fetchall()
    written: dict[str, int] = {}
    for symbol, day, expected in days:
        start = dt.datetime.combine(day, dt.time(), tzinfo=NEW_YORK)  # the grouping's own bounds (on ts)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=NEW_YORK)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT * FROM {} WHERE symbol = %s AND ts >= %s AND ts < %s AND ts < %s ORDER BY ts_ns, seq"
                ).format(sql.Identifier(table)),
                (symbol, start, end, cutoff),
            )
            names = [d.name for d in cur.description or []]
            records = [record_of_row(dict(zip(names, row, strict=True))) for row in cur]
        if len(records) != expected:
            raise FatalError(f"archive of {table} {symbol} {day}: read {len(records)} rows of {expected}")
        path = write_part(partition_dir(root, table, symbol, day), table, records)
        written[str(path)] = len(records)
        log.info("archived %d rows of %s %s %s to %s", len(records), table, symbol, day, path)
    conn.commit()
    return written


def legacy_files(root: Path) -> dict[tuple[str, str], list[Path]]:
    """(table, symbol) -> files of the layout before Hive partitions (``<table>/<SYMBOL>/<day>.parquet``)."""
    out: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for table in (MARKET_TRADES, MARKET_QUOTES):
        for path in sorted((root / table).glob("*/*.parquet")):
            if "=" not in path.parent.name:
                out[(table, path.parent.name)].append(path)
    return dict(out)


def migrate_legacy(root: Path, dry_run: bool = False) -> dict[str, int]:
    """Rewrite the old layout (files per UTC day, untyped) into the Hive layout (parts per New York date,
    typed); the old files of a symbol are removed once all their rows are in checked new files. Returns
    new file -> rows (what would be written, on a dry run)."""
    import pyarrow.parquet as pq

    written: dict[str, int] = {}
    for (table, symbol), files in legacy_files(root).items():
        by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
        total = 0
        for path in files:
            rows = pq.read_table(path).to_pylist()
            total += len(rows)
            for row in rows:
                record = record_of_row(row)
                record.pop("symbol", None)
                by_day[session_date(record["ts"])].append(record)
        if sum(len(v) for v in by_day.values()) != total:
            raise FatalError(f"archive migration of {table} {symbol}: rows lost on the way; nothing was removed")
        for day, records in sorted(by_day.items()):
            records.sort(key=lambda r: (r["ts"], r.get("seq", 0)))
            directory = partition_dir(root, table, symbol, day)
            if dry_run:
                written[str(directory)] = len(records)
                continue
            # one fixed name per (symbol, date): a migration cut short and run again writes the same file again
            path = write_part(directory, table, records, MIGRATED)
            written[str(path)] = len(records)
        if not dry_run:
            for path in files:
                path.unlink()
            with_nothing = files[0].parent
            if not any(with_nothing.iterdir()):
                with_nothing.rmdir()
            log.info("migrated %d rows of %s %s from %d files", total, table, symbol, len(files))
    return written
