"""`scalp sink` against the real Kafka, registry and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import re
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.examples import EXAMPLE_TS_NS, example_record
from tests.cli_util import scalp
from tests.sink_util import migrated, producer_for, quotes, scalar, sink_config


def run_sink(config: Path, dsn: str, prefix: str, *args: str) -> object:
    return scalp("--config", str(config), "sink", *args, env={"DATABASE_URL": dsn, "SCALP_TOPIC_PREFIX": prefix})


def test_every_table_receives_records_from_its_topic(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    dsn = migrated(fresh_db)
    producer, _, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(producer.kafka, catalog()).create_all()
    for spec in catalog():
        producer.produce(spec.name, example_record(catalog(), spec.name))
    producer.flush()
    config = sink_config(tmp_path)
    proc = run_sink(config, dsn, prefix, "--until-idle", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for spec in catalog():
        assert scalar(dsn, f"SELECT count(*) FROM {spec.name}") == 1, spec.name  # noqa: S608
    expected_ts = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)
    assert scalar(dsn, "SELECT ts FROM market_trades") == expected_ts
    assert scalar(dsn, "SELECT ts_ns FROM market_trades") == EXAMPLE_TS_NS
    assert scalar(dsn, "SELECT cash FROM account_snapshot") == Decimal("1234.500000")
    assert scalar(dsn, "SELECT jsonb_array_length(legs) FROM orders") == 1
    assert scalar(dsn, "SELECT payload->>'class' FROM orders") == "otoco"
    assert scalar(dsn, "SELECT ts_date FROM risk_day") == dt.date(2026, 11, 23)
    assert scalar(dsn, "SELECT expiration FROM options_chain") == dt.date(2026, 11, 23)
    assert scalar(dsn, "SELECT limits_snapshot->>'max_trades_per_day' FROM risk_decisions") == "5"
    # a second run finds nothing new: the stored offsets are the end offsets
    again = run_sink(config, dsn, prefix, "--until-idle", "2")
    assert again.returncode == 0
    assert "sink: 0 rows written" in again.stdout  # nothing new after the first run
    status = run_sink(config, dsn, prefix, "--status")
    assert "total lag 0" in status.stdout


def test_risk_day_keeps_every_update_even_several_at_one_event_time(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    """Updates of the day at one event time (decisions and a closed trade in the same instant) are all
    stored; the table's last state of the day is the last update (the risk module's state)."""
    dsn = migrated(fresh_db)
    producer, _, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(producer.kafka, catalog()).create_all()
    base = example_record(catalog(), "risk_day")
    updates = [{**base, "seq": n, "trades_taken": n, "r_realized": 0.5 * n} for n in range(1, 6)]
    for record in updates:
        producer.produce("risk_day", record)
    producer.flush()
    proc = run_sink(sink_config(tmp_path), dsn, prefix, "--until-idle", "2", "--topics", "risk_day")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT seq, trades_taken, r_realized FROM risk_day ORDER BY ts_date, seq").fetchall()
    assert rows == [(n, n, 0.5 * n) for n in range(1, 6)]  # none dropped as a duplicate of (ts_date, ts)
    assert rows[-1] == (updates[-1]["seq"], updates[-1]["trades_taken"], updates[-1]["r_realized"])


def test_event_times_are_stored_exactly_to_the_microsecond(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    """timestamp-nanos fields travel to timestamptz as COPY's int8 wire form: the stored value must be
    the event time floored to the microsecond, the same as building the datetime in Python."""
    from sinks.rows import ns_to_datetime

    dsn = migrated(fresh_db)
    producer, kafka, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(kafka, catalog()).create_all()
    base = 1_795_446_000_000_000_000  # 2026-11-23 15:00 UTC
    offsets_ns = [0, 1, 999, 1_000, 1_001, 123_456_789, 86_399_999_999_999]  # sub-us parts, end of day
    records = quotes(len(offsets_ns))
    for record, extra in zip(records, offsets_ns, strict=True):
        record.update(ts=base + extra, ts_ingest=base + extra + 2_500)
        producer.produce("market_quotes", record)
    producer.flush()
    proc = run_sink(sink_config(tmp_path), dsn, prefix, "--until-idle", "2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    with psycopg.connect(dsn) as conn:
        stored = conn.execute("SELECT seq, ts, ts_ns, ts_ingest FROM market_quotes ORDER BY seq").fetchall()
    assert len(stored) == len(records)
    for (seq, ts, ts_ns, ts_ingest), record in zip(stored, records, strict=True):
        assert seq == record["seq"]
        assert ts_ns == record["ts"]
        assert ts == ns_to_datetime(record["ts"])
        assert ts_ingest == ns_to_datetime(record["ts_ingest"])


def test_poison_records_go_to_the_dlq_and_the_rest_is_written(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    dsn = migrated(fresh_db)
    producer, kafka, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(kafka, catalog()).create_all()
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    # a schema the registry holds but that is no Avro schema (a JSON Schema under another subject)
    json_schema = '{"type": "object", "properties": {"a": {"type": "string"}}}'
    registry = SchemaRegistryClient({"url": services.registry.url})
    not_avro = registry.register_schema(f"{prefix}probe-json-value", Schema(json_schema, "JSON"))
    good = quotes(500)
    for i, record in enumerate(good):
        producer.produce("market_quotes", record)
        if i == 100:
            producer.send(kafka.topic("market_quotes"), b"not avro at all", b"SPY", 0)
        if i == 200:
            producer.send(kafka.topic("market_quotes"), struct.pack(">bI", 0, 987654) + b"\x00", b"SPY", 0)
        if i == 300:
            producer.send(kafka.topic("market_quotes"), struct.pack(">bI", 0, not_avro) + b"\x02a", b"SPY", 0)
    signals = []
    for i in range(60):
        record = example_record(catalog(), "signals")
        record.update(id=f"sig-{i}", ts=EXAMPLE_TS_NS + i, status="weird" if i == 30 else "generated")
        signals.append(record)
        producer.produce("signals", record)
    producer.flush()
    config = sink_config(tmp_path)
    proc = run_sink(config, dsn, prefix, "--until-idle", "2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert scalar(dsn, "SELECT count(*) FROM market_quotes") == 500
    assert scalar(dsn, "SELECT count(*) FROM signals") == 59
    assert scalar(dsn, "SELECT count(*) FROM signals WHERE id = 'sig-30'") == 0
    report = run_sink(config, dsn, prefix, "--dlq-report")
    assert report.returncode == 0
    assert "dead letters: 4 in 2 topics" in report.stdout
    assert f"schema id {not_avro} is not a usable Avro schema" in report.stdout
    assert "unknown schema id 987654" in report.stdout
    assert "CheckViolation" in report.stdout
    assert "unknown magic byte" in report.stdout


def test_unknown_topic_is_a_usage_error(services: AppSettings) -> None:
    proc = scalp("sink", "--topics", "market_trades,nope")
    assert proc.returncode == 2
    assert "unknown topic 'nope'" in proc.stderr


def test_health_and_metrics_endpoints(services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path) -> None:
    import socket
    import time

    import requests

    from tests.sink_util import start_sink

    dsn = migrated(fresh_db)
    producer, kafka, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(kafka, catalog()).create_all()
    for record in quotes(1000):
        producer.produce("market_quotes", record)
    producer.flush()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = sink_config(tmp_path, http_port=port)
    config.write_text(config.read_text().replace("  http_port: 0\n", ""))
    proc = start_sink(config, dsn, prefix)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if scalar(dsn, "SELECT count(*) FROM market_quotes") == 1000:
                    break
            except Exception:  # noqa: S110 (table being written)
                pass
            time.sleep(0.5)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["rows_written"] == 1000
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'scalp_sink_rows_written_total{table="market_quotes"} 1000.0' in metrics
        assert "scalp_sink_batch_seconds_bucket" in metrics
        lag_line = rf'scalp_consumer_lag_messages{{partition="\d",topic="{prefix}market_quotes"}} 0\.0'
        deadline = time.monotonic() + 30  # the lag gauge is refreshed every 10 s
        while not re.search(lag_line, metrics) and time.monotonic() < deadline:
            time.sleep(1)
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert re.search(lag_line, metrics), out[-3000:]
    assert proc.returncode == 0, out[-2000:]
    assert "flushing and leaving the group" in out


def _varied(topic: str, i: int, rng: random.Random) -> dict[str, Any]:
    """The example record of ``topic`` with values that stress the CSV fast path: nulls, ns that are not
    whole microseconds, floats of every magnitude, integer arrays, strings that need quoting."""
    record = example_record(catalog(), topic)
    for field in catalog()[topic].schema["fields"]:
        name, kind = field["name"], field["type"]
        nullable = isinstance(kind, list) and "null" in kind
        branch = next((b for b in kind if b != "null"), None) if isinstance(kind, list) else kind
        if nullable and i % 4 == 0:
            record[name] = None
        elif isinstance(branch, dict) and branch.get("logicalType") == "timestamp-nanos":
            record[name] = EXAMPLE_TS_NS + i * 1_000_003 + rng.randrange(1000)
        elif branch == "double":
            record[name] = rng.choice([0.1 + 0.2, 1e-9, 123456.789, -0.0, 600.01]) * rng.choice([1, 3, 1e6])
        elif branch in ("long", "int") and name not in ("partition",):
            record[name] = rng.randrange(0, 2**31 - 1)
        elif isinstance(branch, dict) and branch.get("type") == "array" and branch.get("items") in ("int", "long"):
            record[name] = [rng.randrange(0, 100) for _ in range(i % 3)]
        elif name == "source":
            record[name] = rng.choice(["", "a,b", 'q"x', "é ü", "ws"])
    return record


def test_the_fast_path_stores_exactly_what_the_row_path_stores(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    """The same records through the columnar fast path and through the row-by-row path (`columnar:
    false`): every stored value equal, for every table the fast path takes."""
    from kafkaio.admin import TopicAdmin
    from sinks.columnar import ColumnarCodec
    from sinks.rows import table_spec

    dsn = migrated(fresh_db)
    with psycopg.connect(dsn) as conn:
        fast_tables = [
            s.name
            for s in catalog()
            if ColumnarCodec.build(table_spec(conn, s), s.schema) and s.name != "config_snapshots"  # one per digest
        ]
    assert {"market_trades", "market_quotes", "bars_1m", "features"} <= set(fast_tables), fast_tables
    producer, _, _ = producer_for(services, prefix)
    TopicAdmin(producer.kafka, catalog()).create_all()
    rng = random.Random(3)
    for topic in fast_tables:
        for i in range(3000):
            producer.produce(topic, _varied(topic, i, rng))
    producer.flush()

    def stored() -> dict[str, list[tuple[Any, ...]]]:
        with psycopg.connect(dsn) as conn:
            return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in fast_tables}  # noqa: S608

    for side in ("slow", "fast"):
        (tmp_path / side).mkdir()
    slow = run_sink(sink_config(tmp_path / "slow", columnar="false"), dsn, prefix, "--until-idle", "2")
    assert slow.returncode == 0, slow.stderr[-2000:]
    assert "(0 through the fast path" in slow.stdout
    by_rows = stored()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(fast_tables)}")
    fast = run_sink(sink_config(tmp_path / "fast"), dsn, prefix, "--until-idle", "2")
    assert fast.returncode == 0, fast.stderr[-2000:]
    count = sum(len(rows) for rows in by_rows.values())
    assert count == 3000 * len(fast_tables)
    written = re.search(r"sink: (\d+) rows written \((\d+) through the fast path, 0 batches", fast.stdout)
    assert written is not None, fast.stdout
    assert int(written.group(1)) == count
    assert int(written.group(2)) >= count - len(fast_tables)  # all but each schema's first record
    assert stored() == by_rows


def test_order_snapshots_a_nanosecond_apart_are_both_kept(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    """The router stamps `pending` 1 ns after `sending` (same event time): one microsecond of timestamptz;
    the table keeps both (its key has ts_ns), as it keeps every distinct record of the topic."""
    dsn = migrated(fresh_db)
    producer, kafka, _ = producer_for(services, prefix)
    from kafkaio.admin import TopicAdmin

    TopicAdmin(kafka, catalog()).create_all()
    first = example_record(catalog(), "orders")
    first.update(id="ord-1", ts=EXAMPLE_TS_NS, status="sending")
    second = {**first, "ts": EXAMPLE_TS_NS + 1, "status": "pending"}
    for record in (first, second, second):  # the repeat is a duplicate: one row
        producer.produce("orders", record)
    producer.flush()
    proc = run_sink(sink_config(tmp_path), dsn, prefix, "--until-idle", "2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT status, ts_ns FROM orders WHERE id = 'ord-1' ORDER BY ts_ns").fetchall()
    assert rows == [("sending", EXAMPLE_TS_NS), ("pending", EXAMPLE_TS_NS + 1)]
