"""Migrations on the real PostgreSQL (plain flavour: native partitioning managed by pg_partman; the
TimescaleDB flavour: test_timescaledb.py)."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from kafkaio.errors import ConfigError
from schemas.catalog import catalog
from sinks.migrate import discover, migrate
from tests.cli_util import TIME_TABLES

DB_FLAVOUR = "plain"  # pg_partman partitions; the TimescaleDB flavour has its own module


def columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public'", (table,)
    ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_everything_and_rerun_is_a_no_op(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = migrate(conn)
        assert first.flavour == "plain"
        assert first.applied == [m.version for m in discover("plain")]
        second = migrate(conn)
        assert second.applied == []
        assert second.skipped == first.applied

        for spec in catalog():
            assert set(spec.field_names()) <= columns(conn, spec.name), spec.name
        for table in ("signal_labels", "config_snapshots", "sink_offsets", "risk_day"):
            assert columns(conn, table), table

        # time tables are range-partitioned on ts with daily partitions from pg_partman
        for table in TIME_TABLES:
            strategy, key = conn.execute(
                "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
                "JOIN pg_class c ON c.oid = p.partrelid "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0] "
                "WHERE c.relname = %s",
                (table,),
            ).fetchone()
            assert (strategy, key) == ("r", "ts"), table
            parts = conn.execute(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent WHERE c.relname = %s",
                (table,),
            ).fetchone()[0]
            assert parts >= 8, table  # 7 days back + today + ahead + default
            config = conn.execute(
                "SELECT partition_interval FROM partman.part_config WHERE parent_table = %s", (f"public.{table}",)
            ).fetchone()
            assert config == ("1 day",)

        # every unique key includes ts
        uniques = conn.execute(
            "SELECT c.conrelid::regclass::text, array_agg(a.attname) FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) "
            "WHERE c.contype = 'u' AND c.conrelid::regclass::text = ANY(%s) GROUP BY 1, c.conname",
            (TIME_TABLES,),
        ).fetchall()
        assert {t for t, _ in uniques} == set(TIME_TABLES)
        for table, cols in uniques:
            assert "ts" in cols, table


def test_unique_keys_reject_duplicates_and_linkage_is_verified(fresh_db: str) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        migrate(conn)
        row = ("SPY", now, 1, 600.0, 100, [12], 4, 3, 7, "t1", now)
        insert = (
            "INSERT INTO market_trades (symbol, ts, ts_ns, price, size, conditions, exchange, tape, seq, "
            "trade_id, ts_ingest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        conn.execute(insert, row)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, row)

        decision = (
            "INSERT INTO risk_decisions (signal_id, ts, ts_ns, symbol, decision, veto_reasons, "
            "limits_snapshot, session_policy_digest) VALUES (%s, %s, 1, 'SPY', %s, %s, '{}', 'd')"
        )
        conn.execute(decision, ("sig-1", now, "approve", []))
        assert conn.execute("SELECT signal_id FROM risk_decisions_unlinked").fetchall() == [("sig-1",)]
        conn.execute(
            "INSERT INTO signals (id, symbol, ts, ts_ns, session, setup, side, score, features_ref, "
            "status, source_commit, session_policy_digest) VALUES "
            "('sig-1', 'SPY', %s, 1, 'rth', 'vwap_reclaim', 'long', 1.0, 'SPY@1', 'promoted', 'c', 'd')",
            (now,),
        )
        assert conn.execute("SELECT count(*) FROM risk_decisions_unlinked").fetchone() == (0,)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(decision, ("sig-2", now, "veto", []))  # a veto must say why


def test_changed_migration_is_refused(fresh_db: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (x int);")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert migrate(conn, tmp_path).applied == ["0001"]
        (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (x bigint);")
        with pytest.raises(ConfigError, match="changed after it was applied"):
            migrate(conn, tmp_path)


def test_a_corrected_comment_is_accepted_and_a_whole_text_checksum_is_brought_up_to_date(
    fresh_db: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    path = tmp_path / "0001_t.sql"
    path.write_text("-- what it is\nCREATE TABLE t (x int);\n")
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert migrate(conn, tmp_path).applied == ["0001"]
        path.write_text("-- what it really is\nCREATE TABLE t (x int);\n")
        assert migrate(conn, tmp_path).skipped == ["0001"]
        # a database migrated when the checksum covered the whole text
        whole = hashlib.sha256(path.read_text().encode()).hexdigest()
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = '0001'", (whole,))
        assert migrate(conn, tmp_path).skipped == ["0001"]
        stored = conn.execute("SELECT checksum FROM schema_migrations WHERE version = '0001'").fetchone()
        assert stored is not None
        assert stored[0] != whole
        path.write_text("-- what it really is\nCREATE TABLE t (x bigint);\n")
        with pytest.raises(ConfigError, match="changed after it was applied"):
            migrate(conn, tmp_path)


def test_a_migration_that_meets_a_concurrent_catalog_change_is_tried_again(fresh_db: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The error TimescaleDB's background workers caused in CI ("tuple concurrently deleted") rolls the
    migration back whole; it is tried again and applied once. Other errors are not retried."""
    (tmp_path / "0001_flaky.sql").write_text(
        "CREATE TABLE once (x int);\n"
        "DO $$ BEGIN IF nextval('attempts') < 3 THEN\n"  # sequences do not roll back: the third try passes
        "  RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = 'tuple concurrently deleted';\n"
        "END IF; END $$;\n"
    )
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE attempts")  # outside the migration's transaction: it counts every try
        result = migrate(conn, tmp_path)
        assert result.applied == ["0001"]
        assert conn.execute("SELECT last_value FROM attempts").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'once'").fetchone() == (1,)
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE once (x int);\n")
    with psycopg.connect(fresh_db, autocommit=True) as conn, pytest.raises(psycopg.errors.DuplicateTable):
        migrate(conn, tmp_path)


def test_work_that_meets_a_real_deadlock_is_rolled_back_and_run_again(fresh_db: str) -> None:
    """What `db maintain` met in CI: its chunk drop deadlocked with TimescaleDB's own jobs. Here a real
    deadlock with another session: the work loses (it waits first, and its deadlock check comes first), is
    rolled back whole and run again once the other session committed; both changes land."""
    import threading

    from sinks.transient import retry_transient

    with psycopg.connect(fresh_db, autocommit=True) as setup:
        setup.execute("CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL)")
        setup.execute("INSERT INTO acct VALUES (1, 0), (2, 0)")
    holds_two = threading.Event()
    first_waits = threading.Event()
    tries: list[int] = []

    def other() -> None:
        with psycopg.connect(fresh_db) as conn:
            conn.execute("SET deadlock_timeout = '10s'")
            conn.execute("UPDATE acct SET n = n + 10 WHERE id = 2")
            holds_two.set()
            first_waits.wait(10)
            conn.execute("UPDATE acct SET n = n + 10 WHERE id = 1")  # closes the cycle
            conn.commit()

    with psycopg.connect(fresh_db) as conn:
        conn.execute("SET deadlock_timeout = '1s'")
        conn.commit()
        thread = threading.Thread(target=other)
        thread.start()
        holds_two.wait(10)

        def work() -> None:
            tries.append(1)
            conn.execute("UPDATE acct SET n = n + 1 WHERE id = 1")
            if len(tries) == 1:
                threading.Timer(0.2, first_waits.set).start()
            conn.execute("UPDATE acct SET n = n + 1 WHERE id = 2")  # waits for the other session
            conn.commit()

        retry_transient(conn, "test work", work, pause_s=0.1)
        thread.join(10)
        assert len(tries) == 2
        assert conn.execute("SELECT id, n FROM acct ORDER BY id").fetchall() == [(1, 11), (2, 11)]
