"""`scalp db maintain` on a table with 40 days of ticks: rollup, Parquet archive, retention, dry run (on both
flavours: hypertable chunks, pg_partman partitions)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pyarrow.parquet as pq

from tests.cli_util import scalp
from tests.sink_util import migrated, scalar

DAYS = 40
NY = ZoneInfo("America/New_York")


def fill(dsn: str, today: dt.date) -> None:
    with psycopg.connect(dsn) as conn:
        hypertables = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        for table in () if hypertables and hypertables[0] else ("market_trades", "market_quotes"):  # pg_partman
            first = dt.datetime.combine(today - dt.timedelta(days=DAYS), dt.time(), tzinfo=dt.UTC)
            conn.execute(
                "SELECT partman.create_partition_time(%s, ARRAY(SELECT generate_series(%s::timestamptz, "
                "%s::timestamptz, interval '1 day')))",
                (f"public.{table}", first, first + dt.timedelta(days=DAYS)),
            )
        trades, quotes = [], []
        seq = 0
        for back in range(1, DAYS + 1):
            day = today - dt.timedelta(days=back)
            for symbol in ("SPY", "QQQ"):
                for minute in range(3):
                    base = dt.datetime(day.year, day.month, day.day, 14, 30 + minute, tzinfo=dt.UTC)
                    for k in range(5):
                        seq += 1
                        ts = base + dt.timedelta(seconds=10 * k)
                        odd = k == 4  # an odd lot at an extreme price: volume yes, OHLC no
                        price = 999.0 if odd else 600.0 + minute + k / 10
                        trades.append(
                            (
                                symbol,
                                ts,
                                int(ts.timestamp() * 1e9),
                                price,
                                7 if odd else 100,
                                [37] if odd else [],
                                4,
                                seq,
                                str(seq),
                                ts,
                            )
                        )
                    quotes.append(
                        (symbol, base, int(base.timestamp() * 1e9), 600.0, 600.01, 100, 100, 11, 12, seq, base)
                    )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, conditions, exchange, seq, "
                "trade_id, ts_ingest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                trades,
            )
            cur.executemany(
                "INSERT INTO market_quotes (symbol, ts, ts_ns, bid, ask, bid_size, ask_size, "
                "bid_exchange, ask_exchange, seq, ts_ingest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s)",
                quotes,
            )


def test_retention_rollup_and_archive(services, fresh_db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dsn = migrated(fresh_db)
    today = dt.datetime.now(NY).date()  # the cutoff is midnight in New York: whole sessions go
    fill(dsn, today)
    cutoff = dt.datetime.combine(today - dt.timedelta(days=30), dt.time(), tzinfo=NY)
    old_trades = scalar(dsn, "SELECT count(*) FROM market_trades WHERE ts < %s", cutoff)
    new_trades = scalar(dsn, "SELECT count(*) FROM market_trades WHERE ts >= %s", cutoff)
    old_days = (today - dt.timedelta(days=30) - (today - dt.timedelta(days=DAYS))).days
    assert old_trades == old_days * 2 * 15
    env = {"DATABASE_URL": dsn}

    dry = scalp("db", "maintain", "--dry-run", "--archive-dir", str(tmp_path), env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"market_trades: {old_trades} rows older than the cutoff" in dry.stdout
    assert f"would write {old_days * 2 * 3} minute bars" in dry.stdout
    assert scalar(dsn, "SELECT count(*) FROM market_trades") == old_trades + new_trades
    assert not any(tmp_path.iterdir())

    run = scalp("db", "maintain", "--archive-dir", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr
    assert scalar(dsn, "SELECT count(*) FROM market_trades WHERE ts < %s", cutoff) == 0
    assert scalar(dsn, "SELECT count(*) FROM market_quotes WHERE ts < %s", cutoff) == 0
    assert scalar(dsn, "SELECT count(*) FROM market_trades") == new_trades
    bars = scalar(dsn, "SELECT count(*) FROM bars_1m WHERE aggregated_from = 'trades_rollup'")
    assert bars == old_days * 2 * 3
    with psycopg.connect(dsn) as conn:
        o, h, low, c, v, trades = conn.execute(
            "SELECT o, h, l, c, v, trades FROM bars_1m WHERE aggregated_from = 'trades_rollup' "
            "AND symbol = 'SPY' ORDER BY ts LIMIT 1"
        ).fetchone()
    assert (o, h, low, c) == (600.0, 600.3, 600.0, 600.3)  # the odd lot at 999 does not set prices
    assert v == 4 * 100 + 7  # but counts in volume
    assert trades == 5
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) == old_days * 2 * 2  # per table, symbol and day
    assert {f.parent.parent.name for f in files} == {"symbol=SPY", "symbol=QQQ"}  # Hive-style
    trade_files = [f for f in files if "market_trades" in str(f)]
    assert sum(pq.read_metadata(f).num_rows for f in trade_files) == old_trades
    assert all(pq.read_metadata(f).num_rows == 15 for f in trade_files)
    assert "partitions" in run.stdout

    again = scalp("db", "maintain", env=env)
    assert again.returncode == 0
    assert "market_trades: 0 rows older than the cutoff" in again.stdout
    assert "write 0 minute bars" in again.stdout
