"""The migrations on the real TimescaleDB (built from its release source, preloaded by the local stack):
hypertables, columnstore settings and policies, the continuous aggregate, and retention that only
`scalp db maintain` carries out, with the background jobs run by hand and by their own scheduler."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from sinks.migrate import discover, migrate
from tests.cli_util import TIME_TABLES

HYPERTABLES = set(TIME_TABLES)


DB_FLAVOUR = "timescale"


@pytest.fixture
def conn(fresh_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(fresh_db, autocommit=True) as connection:
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
    columnstore = [h for p, h, _ in jobs if p == "policy_compression"]  # add_columnstore_policy's job
    refresh = [c for p, _, c in jobs if p == "policy_refresh_continuous_aggregate"]
    assert retention == set()  # only `scalp db maintain` removes ticks
    assert sorted(columnstore) == ["bars_1m", "features", "market_quotes", "market_trades", "options_chain"]
    assert len(refresh) == 1


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


def _old_ticks(conn: psycopg.Connection, days_back: tuple[int, ...]) -> int:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    n = 0
    for back in days_back:
        ts = now - dt.timedelta(days=back)
        for k in range(4):
            n += 1
            conn.execute(
                "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, exchange, seq, trade_id, ts_ingest) "
                "VALUES ('SPY', %s, 0, %s, 100, 4, %s, %s, now())",
                (ts + dt.timedelta(seconds=k), 600.0 + k, n, f"o{back}-{k}"),
            )
            conn.execute(
                "INSERT INTO market_quotes (symbol, ts, ts_ns, bid, ask, bid_size, ask_size, bid_exchange, "
                "ask_exchange, seq, ts_ingest) VALUES ('SPY', %s, 0, 600, 600.01, 1, 1, 11, 12, %s, now())",
                (ts + dt.timedelta(seconds=k), n),
            )
    return n


def test_no_background_job_drops_a_tick_only_maintenance_does(conn: psycopg.Connection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ticks 400 and 40 days old: every job of the database run by hand (CALL run_job) and then left to its
    own scheduler compresses chunks but removes nothing; `scalp db maintain` then rolls up, archives and
    drops what is past its retention."""
    from tests.cli_util import scalp

    migrate(conn)
    ticks = _old_ticks(conn, (400, 40, 1))
    jobs = [row[0] for row in conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE job_id >= 1000")]
    for job in jobs:  # by hand first: the scheduler holds off (a run it started already may still finish)
        conn.execute("SELECT alter_job(%s, scheduled => false)", (job,))
    for job in jobs:
        for _attempt in range(20):
            try:
                conn.execute("CALL run_job(%s)", (job,))
                break
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DataException):
                time.sleep(0.5)  # a run the scheduler had started holds the chunk or the aggregate
        else:
            pytest.fail(f"job {job} stayed locked by a concurrent run")
    assert conn.execute("SELECT count(*) FROM market_trades").fetchone() == (ticks,)
    compressed = conn.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'market_trades' AND is_compressed"
    ).fetchone()
    assert compressed == (2,)  # the 400- and 40-day chunks went to the columnstore; the 1-day one not yet
    # the scheduler runs every job once more on its own
    started = time.monotonic()
    conn.execute(
        "SELECT alter_job(job_id, scheduled => true, next_start => now()) FROM timescaledb_information.jobs "
        "WHERE job_id >= 1000"
    )
    while time.monotonic() - started < 60:
        done = conn.execute(
            "SELECT count(*) FROM timescaledb_information.job_stats WHERE job_id >= 1000 "
            "AND last_run_started_at >= now() - make_interval(secs => %s)",
            (time.monotonic() - started + 1,),
        ).fetchone()
        if done == (len(jobs),):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the background jobs did not run on their own within 60 s")
    assert conn.execute("SELECT count(*) FROM market_trades").fetchone() == (ticks,)
    assert conn.execute("SELECT count(*) FROM market_quotes").fetchone() == (ticks,)
    dsn = conn.info.dsn
    run = scalp("db", "maintain", "--retention-days", "30", "--archive-dir", str(tmp_path), env={"DATABASE_URL": dsn})
    assert run.returncode == 0, run.stdout + run.stderr
    assert conn.execute("SELECT count(*) FROM market_trades").fetchone() == (4,)  # the day-old ticks stay
    archived = sum(1 for _ in tmp_path.rglob("*.parquet"))
    assert archived == 4  # trades and quotes of the two old days


def test_a_server_without_the_preload_is_told_exactly_what_to_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The extension's files are installed machine-wide, so every cluster lists it; one started without the
    preload cannot create it, and `scalp db migrate` says what to set (exit 2) instead of half migrating."""
    import socket

    from scalp.stack.postgres import Postgres
    from scalp.stack.settings import StackSettings
    from tests.cli_util import scalp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = Postgres(StackSettings(state_dir=tmp_path / "state", postgres_port=port, db_flavour="plain"))
    server.prepare()
    server.start()
    try:
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as admin:
            admin.execute("ALTER DATABASE scalp SET scalp.flavour = ''")  # no flavour chosen: detected
        run = scalp("db", "migrate", env={"DATABASE_URL": server.dsn()})
        assert run.returncode == 2, run.stdout + run.stderr
        assert "TimescaleDB is installed but not preloaded" in run.stderr, run.stderr
        assert "shared_preload_libraries = 'timescaledb'" in run.stderr
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT to_regclass('market_trades')").fetchone() == (None,)  # nothing half done
    finally:
        server.stop()


def test_the_aggregate_and_the_rollup_make_the_same_bars(conn: psycopg.Connection) -> None:
    """A synthetic session with odd lots at extreme prices (37), Form T (12), official closes (15: no
    volume), intermarket sweeps (14: count fully): the continuous aggregate's bars equal the maintenance
    rollup's, which apply the trade-condition rules of config/trade_conditions.yaml."""
    import datetime as dt
    import random

    from sinks.maintain import _ROLLUP, excluded_codes

    migrate(conn)
    rng = random.Random(7)
    start = dt.datetime(2026, 11, 20, 14, 30, tzinfo=dt.UTC)
    rows = []
    seq = 0
    for symbol, base in (("SPY", 600.0), ("QQQ", 500.0)):
        for minute in range(30):
            for k in range(8):
                seq += 1
                ts = start + dt.timedelta(minutes=minute, seconds=7 * k, microseconds=seq)
                conditions = rng.choice([[], [], [], [37], [12], [15], [14], [14, 37]])
                price = base + rng.uniform(-1, 1)
                if 37 in conditions or 15 in conditions:
                    price = base * 1.5  # an extreme price that must not set OHLC
                size = 7 if 37 in conditions else 100
                rows.append((symbol, ts, price, size, conditions, seq))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, conditions, exchange, seq, trade_id, "
            "ts_ingest) VALUES (%s, %s, 0, %s, %s, %s, 4, %s, %s::text, now())",
            [(s, ts, p, z, c, q, q) for s, ts, p, z, c, q in rows],
        )
    conn.execute("CALL refresh_continuous_aggregate('bars_1m_trades_cagg', NULL, NULL)")
    cagg = {
        (s, ts): rest
        for s, ts, *rest in conn.execute(
            "SELECT symbol, ts, o, h, l, c, v, vwap, trades FROM bars_1m_trades_cagg WHERE o IS NOT NULL"
        )
    }
    no_price, no_volume = excluded_codes()
    conn.execute(_ROLLUP, {"no_price": no_price, "no_volume": no_volume, "cutoff": start + dt.timedelta(days=1)})
    rollup = {
        (s, ts): rest
        for s, ts, *rest in conn.execute(
            "SELECT symbol, ts, o, h, l, c, v, vwap, trades FROM bars_1m WHERE aggregated_from = 'trades_rollup'"
        )
    }
    assert len(rollup) == 60
    assert cagg.keys() == rollup.keys()
    for key, (o, h, low, c, v, vwap, n) in rollup.items():
        co, ch, cl, cc, cv, cvwap, cn = cagg[key]
        assert (co, ch, cl, cc, cv, cn) == (o, h, low, c, v, n), key
        assert cvwap == pytest.approx(vwap), key
        assert h < (750.0 if key[0] == "QQQ" else 900.0)  # no extreme print set a high
    excluded = [r for r in rows if 15 in r[4]]
    assert excluded  # the session holds prints that count nowhere
    assert sum(v for (_, _, _, _, v, _, _) in rollup.values()) == sum(r[3] for r in rows if 15 not in r[4])


def test_the_aggregate_uses_the_condition_table_of_the_yaml() -> None:
    import re

    from sinks.maintain import excluded_codes
    from sinks.migrate import MIGRATIONS_DIR

    sql = (MIGRATIONS_DIR / "0010_cagg_condition_rules.timescale.sql").read_text()
    lists = {tuple(int(x) for x in m.split(",")) for m in re.findall(r"'\{([\d,]+)\}'::int\[\]", sql)}
    no_price, no_volume = excluded_codes()
    assert lists == {tuple(no_price), tuple(no_volume)}


def test_the_sink_writes_into_compressed_chunks_exactly_once(  # type: ignore[no-untyped-def]
    services, fresh_db: str, prefix: str, tmp_path
) -> None:
    """A day is written, its chunks go to the columnstore, then a late backfill of that day arrives (new
    quotes and a replay of ones already stored): the COPY fast path and the row path both write into the
    compressed chunks, and every quote is stored once."""
    from kafkaio.admin import TopicAdmin
    from schemas.catalog import catalog
    from tests.cli_util import scalp
    from tests.sink_util import migrated, producer_for, quotes, sink_config

    dsn = migrated(fresh_db)
    producer, kafka, _ = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    day = quotes(9000)  # one trading day, 9 s of quotes
    env = {"DATABASE_URL": dsn, "SCALP_TOPIC_PREFIX": prefix}

    def sink(records: list[dict], **config: object) -> None:  # type: ignore[type-arg]
        for record in records:
            producer.produce("market_quotes", record)
        producer.flush()
        run = scalp("--config", str(sink_config(tmp_path, **config)), "sink", "--until-idle", "2", env=env)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    sink(day[:3000])
    with psycopg.connect(dsn, autocommit=True) as conn:
        chunks = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('market_quotes') c").fetchone()
        assert chunks is not None
        assert chunks[0] >= 1
    sink(day[2000:6000])  # 1000 already stored, 3000 new: the COPY fast path
    sink(day[5000:9000], columnar="false")  # 1000 already stored, 3000 new: the row path
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT (symbol, ts, seq)) FROM market_quotes").fetchone() == (
            9000,
            9000,
        )
        compressed = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'market_quotes' "
            "AND is_compressed"
        ).fetchone()
    assert compressed is not None
    assert compressed[0] >= 1  # written into, still in the columnstore
