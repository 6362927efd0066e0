"""Plain PostgreSQL: pg_partman never removes ticks on its own. Releases before migration 0015 left a
pg_partman retention of `--retention-days` on the tick tables; pg_partman applies it to whole UTC-day
partitions against now(), so a run between midnight UTC and midnight in New York dropped the oldest kept
session, unarchived. Reproduced here without waiting for that hour: the retention an old release set drops a
partition that no `scalp db maintain` has archived; the upgrade clears it and the same upkeep keeps it."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import psycopg

from sinks.migrate import MIGRATIONS_DIR, migrate
from tests.cli_util import scalp
from tests.sink_util import scalar

DB_FLAVOUR = "plain"
TICK = (
    "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, conditions, exchange, seq, trade_id, ts_ingest) "
    "VALUES ('SPY', %(ts)s, %(ns)s, 600.0, 100, '{}', 4, 1, '1', %(ts)s)"
)


def old_release(tmp_path: Path) -> Path:
    """The migrations a release before 0015 shipped."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0015":
            shutil.copy(path, folder / path.name)
    return folder


def an_old_tick(conn: psycopg.Connection, days: int) -> dt.datetime:
    """A tick ``days`` days back in its own day partition (as a backfill creates it)."""
    ts = dt.datetime.now(dt.UTC).replace(hour=14, minute=30, second=0, microsecond=0) - dt.timedelta(days=days)
    day = ts.replace(hour=0, minute=30)
    conn.execute("SELECT partman.create_partition_time('public.market_trades', ARRAY[%s::timestamptz])", (day,))
    conn.execute(TICK, {"ts": ts, "ns": int(ts.timestamp() * 1e9)})
    return ts


def test_the_upgrade_clears_the_retention_an_old_maintain_set(services, fresh_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn, old_release(tmp_path))
        # what `scalp db maintain --retention-days 30` of those releases left behind
        conn.execute(
            "UPDATE partman.part_config SET retention = '30 days', retention_keep_table = false "
            "WHERE parent_table IN ('public.market_trades', 'public.market_quotes')"
        )
        an_old_tick(conn, 40)
        conn.execute("SELECT partman.run_maintenance()")
        # the bug this guards against: the tick is gone without a rollup or an archive
        assert scalar(fresh_db, "SELECT count(*) FROM market_trades") == 0

        kept = an_old_tick(conn, 40)
        assert migrate(conn).applied == ["0015.plain"]
        retention = conn.execute("SELECT count(*) FROM partman.part_config WHERE retention IS NOT NULL").fetchone()
        assert retention == (0,)
        conn.execute("SELECT partman.run_maintenance()")
        assert scalar(fresh_db, "SELECT count(*) FROM market_trades WHERE ts = %s", kept) == 1


def test_maintain_leaves_no_retention_to_pg_partman(services, fresh_db: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        kept = an_old_tick(conn, 29)  # inside the 30 days `scalp db maintain` keeps
    run = scalp("db", "maintain", "--retention-days", "30", env={"DATABASE_URL": fresh_db})
    assert run.returncode == 0, run.stderr
    assert scalar(fresh_db, "SELECT count(*) FROM partman.part_config WHERE retention IS NOT NULL") == 0
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("SELECT partman.run_maintenance()")
    assert scalar(fresh_db, "SELECT count(*) FROM market_trades WHERE ts = %s", kept) == 1
