"""Research past the retention window: two synthetic sessions through ingest and the sink, the older one
archived by `scalp db maintain` and cut from Kafka by retention. A day replays identically from Kafka, the
tables and the archive, and `--source auto` reads each day from whatever still holds it, stating which; the
archive is typed Hive-style Parquet that pandas, polars and duckdb read with its partition columns."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import TopicPartition

from kafkaio import clients
from kafkaio.admin import TopicAdmin
from kafkaio.reader import RangeReader
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.cli_util import scalp
from tests.sink_util import migrated, scalar, sink_config, start_sink
from tests.streams_util import loose_policy

NY = ZoneInfo("America/New_York")
OLD, NEW = dt.date(2026, 11, 19), dt.date(2026, 11, 20)
COMPARED = ("features", "signals", "risk_decisions", "order_intents", "risk_day")


@pytest.fixture(scope="module")
def two_days(services: AppSettings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("archive")
    prefix = f"a{uuid.uuid4().hex[:8]}_"
    env = {"SCALP_TOPIC_PREFIX": prefix, "SCALP_MIN_RETENTION_MS": "-1"}
    for day, start, end in ((OLD, "15:30", "19:30"), (NEW, "09:30", "10:15")):
        done = scalp("ingest", "synthetic", "--date", day.isoformat(), "--start", start, "--end", end,
                     "--symbols", "SPY,QQQ", env=env, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield prefix, env, tmp
    TopicAdmin(services.kafka, catalog()).delete_prefixed(prefix)


def _replay(prefix: str, tmp: Path, policy: Path, run: str, *args: str, dsn: str, archive: Path) -> dict[str, Any]:
    env = {"SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": dsn, "SCALP_ARCHIVE_DIR": str(archive)}
    done = scalp("replay", "--run-id", run, "--policy", str(policy), "--no-feedback", "--out", str(tmp / "runs"),
                 *args, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads((tmp / "runs" / run / "run.json").read_text()))


def _outputs(meta: dict[str, Any]) -> dict[str, Any]:
    return {t: meta["outputs"][t] for t in COMPARED}


def _trim_kafka_before(services: AppSettings, prefix: str, when: dt.datetime) -> None:
    """What retention does: delete every market record before ``when``."""
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    admin = clients.admin(kafka)
    cuts = []
    with RangeReader(kafka, "test-trim") as reader:
        for topic in ("market_trades", "market_quotes"):
            physical = kafka.topic(topic)
            for p in reader.partitions(physical):
                offset = reader.offset_for_time(physical, p, int(when.timestamp() * 1000))
                cuts.append(TopicPartition(physical, p, offset if offset >= 0 else reader.watermarks(physical, p)[1]))
    for future in admin.delete_records(cuts).values():
        future.result()


def test_a_day_replays_the_same_from_kafka_tables_and_archive_and_auto_says_where_each_came_from(
    services: AppSettings, two_days: Any, fresh_db: str
) -> None:
    prefix, _, tmp = two_days
    dsn = migrated(fresh_db)
    policy = loose_policy(tmp)
    archive = tmp / "archive"
    sink = start_sink(sink_config(tmp), dsn, prefix, "--until-idle", "4")
    assert sink.wait(300) == 0, (sink.stdout.read() if sink.stdout else "")[-3000:]
    both = ("--from", OLD.isoformat(), "--to", (NEW + dt.timedelta(days=1)).isoformat())
    old = ("--from", OLD.isoformat(), "--to", NEW.isoformat())
    run = {"dsn": dsn, "archive": archive}
    from_kafka = _replay(prefix, tmp, policy, "kafka", "--source", "kafka", *both, **run)
    old_from_kafka = _replay(prefix, tmp, policy, "kafka-old", "--source", "kafka", *old, **run)
    old_from_tables = _replay(prefix, tmp, policy, "tables-old", "--source", "tables", *old, **run)
    assert from_kafka["outputs"]["signals"]["rows"] > 0
    assert old_from_kafka["inputs"] > 10_000
    assert _outputs(old_from_tables) == _outputs(old_from_kafka)

    # the older session leaves the tables for the archive, and Kafka's retention takes it
    keep = (dt.datetime.now(NY).date() - NEW).days  # the cutoff is midnight (New York) starting NEW
    trades_old = scalar(dsn, "SELECT count(*) FROM market_trades WHERE ts < %s", dt.datetime(2026, 11, 20, tzinfo=NY))
    done = scalp(
        "db", "maintain", "--retention-days", str(keep), env={"DATABASE_URL": dsn, "SCALP_ARCHIVE_DIR": str(archive)}
    )
    assert done.returncode == 0, done.stderr
    assert scalar(dsn, "SELECT count(*) FROM market_trades WHERE ts < %s", dt.datetime(2026, 11, 20, tzinfo=NY)) == 0
    files = sorted(archive.rglob("*.parquet"))
    assert {f.relative_to(archive).parts[:3] for f in files} == {
        (table, f"symbol={s}", f"date={OLD}") for table in ("market_trades", "market_quotes") for s in ("SPY", "QQQ")
    }  # the evening session (after 19:00 ET, the next UTC day) is filed under its own date
    _trim_kafka_before(services, prefix, dt.datetime(2026, 11, 20, tzinfo=NY))

    old_from_archive = _replay(prefix, tmp, policy, "archive-old", "--source", "archive", *old, **run)
    assert old_from_archive["inputs"] == old_from_kafka["inputs"]
    assert _outputs(old_from_archive) == _outputs(old_from_kafka)
    auto = _replay(prefix, tmp, policy, "auto", *both, **run)  # auto is the default
    assert auto["source"] == "auto"
    assert auto["days"] == {OLD.isoformat(): "archive", NEW.isoformat(): "tables"}
    assert auto["inputs"] == from_kafka["inputs"]
    assert _outputs(auto) == _outputs(from_kafka)
    assert trades_old > 0

    # a back-test of the archived day: its report charts that day's market from the archive's ticks
    env = {"SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": dsn, "SCALP_ARCHIVE_DIR": str(archive)}
    bt = scalp("backtest", "--run-id", "bt-archive", "--policy", str(policy), "--out", str(tmp / "runs"), *old,
               env=env, timeout=900)  # fmt: skip
    assert bt.returncode == 0, bt.stdout[-3000:] + bt.stderr[-3000:]
    report = tmp / "runs" / "bt-archive" / "report"
    meta = json.loads((tmp / "runs" / "bt-archive" / "run.json").read_text())
    assert meta["days"] == {OLD.isoformat(): "archive"}
    summary = json.loads((report / "summary.json").read_text())
    assert summary["charts"] == [f"{OLD}_QQQ", f"{OLD}_SPY"]
    assert all((report / "sessions" / f"{c}.png").stat().st_size > 10_000 for c in summary["charts"])
    assert all(f'src="sessions/{c}.png"' in (report / "index.html").read_text() for c in summary["charts"])
    assert all(f'data-chart="{c}"' in (report / "sessions.html").read_text() for c in summary["charts"])


def test_every_parquet_file_reads_typed_in_pandas_polars_and_duckdb(two_days: Any) -> None:
    import duckdb
    import pandas as pd
    import polars as pl

    _, _, tmp = two_days
    archive = tmp / "archive" / "market_trades"
    assert archive.is_dir(), "runs after the archive test"
    frame = pd.read_parquet(archive)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert set(frame["symbol"].astype(str)) == {"SPY", "QQQ"}
    assert {str(d) for d in frame["date"].astype(str)} == {OLD.isoformat()}
    lazy = pl.scan_parquet(archive / "**" / "*.parquet", hive_partitioning=True).collect()
    assert lazy.schema["ts"] == pl.Datetime("ns", "UTC")
    assert lazy.schema["date"] == pl.Date
    assert lazy.height == len(frame)
    con = duckdb.connect()
    files = f"{archive}/**/*.parquet"
    rows = con.execute(
        "SELECT typeof(ts), typeof(date), count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY 1, 2",
        [files],
    ).fetchall()
    assert rows == [("TIMESTAMPTZ_NS", "DATE", len(frame))]  # nanoseconds kept
    # a run's outputs: event times as timestamps
    run = tmp / "runs" / "auto"
    features = pd.read_parquet(run / "features.parquet")
    assert str(features["ts"].dtype) == "datetime64[ns, UTC]"
    typed = con.execute("SELECT typeof(ts) FROM read_parquet(?) LIMIT 1", [str(run / "signals.parquet")]).fetchone()
    assert typed == ("TIMESTAMPTZ_NS",)
