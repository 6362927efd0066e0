"""The migrations on TimescaleDB (PGlite build): hypertables, compression, policies, continuous aggregate.

PGlite allows one connection and no COPY, so everything here runs on one connection with INSERTs.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from sinks.migrate import discover, migrate
from tests.cli_util import TIME_TABLES

HYPERTABLES = set(TIME_TABLES)


@pytest.fixture(scope="module")
def conn(timescale_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(timescale_dsn, autocommit=True) as connection:
        yield connection


def test_migrations_apply_in_the_timescale_flavour_and_rerun_is_a_no_op(conn: psycopg.Connection) -> None:
    first = migrate(conn)
    assert first.flavour == "timescale"
    assert first.applied == [m.version for m in discover("timescale")]
    assert "0002.timescale" in first.applied
    again = migrate(conn)
    assert again.applied == []


def test_hypertables_on_ts(conn: psycopg.Connection) -> None:
    migrate(conn)
    rows = conn.execute(
        "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions WHERE hypertable_schema = 'public'"
    ).fetchall()
    assert {name for name, _ in rows} == HYPERTABLES
    assert all(column == "ts" for _, column in rows)


def test_compression_segmented_by_symbol(conn: psycopg.Connection) -> None:
    migrate(conn)
    rows = dict(
        conn.execute(
            "SELECT hypertable_name, attname FROM timescaledb_information.compression_settings "
            "WHERE segmentby_column_index = 1"
        ).fetchall()
    )
    for table in ("market_trades", "market_quotes", "bars_1m", "features"):
        assert rows[table] == "symbol"
    assert rows["options_chain"] == "underlying"


def test_policies_exist(conn: psycopg.Connection) -> None:
    migrate(conn)
    jobs = conn.execute(
        "SELECT proc_name, hypertable_name, config::text FROM timescaledb_information.jobs "
        "WHERE proc_name <> 'policy_telemetry'"
    ).fetchall()
    retention = {h for p, h, _ in jobs if p == "policy_retention"}
    compression = {h for p, h, _ in jobs if p == "policy_compression"}
    refresh = [c for p, _, c in jobs if p == "policy_refresh_continuous_aggregate"]
    assert retention == {"market_trades", "market_quotes"}
    assert {"market_trades", "market_quotes", "bars_1m", "features", "options_chain"} <= compression
    assert len(refresh) == 1
    retention_cfg = next(c for p, h, c in jobs if p == "policy_retention" and h == "market_trades")
    assert '"drop_after": "30 days"' in retention_cfg or "30 days" in retention_cfg


def test_continuous_aggregate_answers_a_time_bucket_query(conn: psycopg.Connection) -> None:
    migrate(conn)
    views = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates").fetchall()
    assert views == [("bars_1m_trades_cagg",)]
    base = "2026-11-23 14:30:00+00"
    trades = [(0, 600.0, 100), (10, 601.0, 300), (59, 599.5, 100), (61, 602.0, 50)]
    for i, (second, price, size) in enumerate(trades):
        conn.execute(
            "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, exchange, seq, trade_id, ts_ingest) "
            "VALUES ('SPY', %s::timestamptz + make_interval(secs => %s), 0, %s, %s, 4, %s, %s, now())",
            (base, second, price, size, i, f"t{i}"),
        )
    conn.execute("CALL refresh_continuous_aggregate('bars_1m_trades_cagg', '2026-11-23', '2026-11-24')")
    bars = conn.execute(
        "SELECT ts, o, h, l, c, v, vwap, trades FROM bars_1m_trades_cagg WHERE symbol = 'SPY' ORDER BY ts"
    ).fetchall()
    assert len(bars) == 2
    _, o, h, low, c, v, vwap, n = bars[0]
    assert (o, h, low, c, v, n) == (600.0, 601.0, 599.5, 599.5, 500, 3)
    assert vwap == pytest.approx((600.0 * 100 + 601.0 * 300 + 599.5 * 100) / 500)
    direct = conn.execute(
        "SELECT time_bucket(INTERVAL '1 minute', ts) AS b, sum(size) FROM market_trades GROUP BY b ORDER BY b"
    ).fetchall()
    assert [row[1] for row in direct] == [500, 50]


def test_maintain_drops_old_chunks_after_rollup(conn: psycopg.Connection) -> None:
    import datetime as dt

    from sinks.maintain import maintain

    migrate(conn)
    now = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
    for back in (40, 35, 10):
        ts = now - dt.timedelta(days=back)
        for k in range(3):
            conn.execute(
                "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, exchange, seq, trade_id, ts_ingest) "
                "VALUES ('QQQ', %s, 0, %s, 10, 4, %s, %s, now())",
                (ts + dt.timedelta(seconds=k), 500.0 + k, back * 10 + k, f"q{back}-{k}"),
            )
    report = maintain(conn, 30, None, False, now)
    assert report.flavour == "timescale"
    assert report.to_drop["market_trades"] == 6
    assert report.partitions, "old chunks are dropped whole"
    assert report.compressed >= 1
    remaining = conn.execute("SELECT count(*) FROM market_trades WHERE symbol = 'QQQ'").fetchone()
    assert remaining == (3,)
    bars = conn.execute(
        "SELECT count(*), sum(v) FROM bars_1m WHERE symbol = 'QQQ' AND aggregated_from = 'trades_rollup'"
    ).fetchone()
    assert bars == (2, 60)
