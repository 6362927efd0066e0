"""`scalp ingest` and `scalp backfill` against the local Polygon-protocol server (a separate process),
with the real `massive` client, the real Kafka and registry."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition

from connectors.synthetic.generator import Session
from connectors.synthetic.runner import RunningServer, synthetic_server
from kafkaio.reader import RangeReader, read_topic
from kafkaio.registry import SchemaRegistry
from kafkaio.settings import KafkaSettings
from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from tests.cli_util import REPO, scalp

DAY = dt.date(2026, 11, 20)
KEY = "test-key-" + uuid.uuid4().hex[:8]
WINDOW = ("09:30", "09:34")


def server_args(*extra: str, symbols: str = "SPY,QQQ", window: tuple[str, str] = WINDOW) -> list[str]:
    return [
        "--date",
        DAY.isoformat(),
        "--symbols",
        symbols,
        "--seed",
        "11",
        "--start",
        window[0],
        "--end",
        window[1],
        "--api-key",
        KEY,
        *extra,
    ]


def run_ingest(server: RunningServer, prefix: str, *extra: str, key: str = KEY, config: Path | None = None) -> Any:
    env = {
        "POLYGON_WS_URL": server.ws_url,
        "POLYGON_REST_URL": server.rest_url,
        "POLYGON_API_KEY": key,
        "SCALP_TOPIC_PREFIX": prefix,
    }
    args = (["--config", str(config)] if config else []) + ["ingest", "polygon", *extra]
    return scalp(*args, env=env, timeout=300)


def records(services: AppSettings, prefix: str, topic: str) -> list[dict[str, Any]]:
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    from kafkaio.registry import SchemaRegistry
    from schemas.catalog import catalog

    serde = AvroSerde(SchemaRegistry(services.registry), kafka, catalog())
    return list(read_topic(kafka, serde, topic))


def dlq_messages(services: AppSettings, physical: str) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": services.kafka.bootstrap_servers, "group.id": "t-dlq", "enable.auto.commit": False}
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(physical, 0), timeout=10)
        if high <= low:
            return []
        consumer.assign([TopicPartition(physical, 0, low)])
        out = []
        while len(out) < high - low:
            msg = consumer.poll(5)
            assert msg is not None
            out.append(msg)
        return out
    finally:
        consumer.close()


def expected_trades(window: tuple[str, str] = WINDOW, symbols: tuple[str, ...] = ("SPY", "QQQ")) -> set[tuple]:
    session = Session(DAY, list(symbols), 11, *window)
    return {(ev["sym"], ev["x"], ev["i"]) for ev in session.stream() if ev["ev"] == "T"}


def trade_keys(rows: list[dict[str, Any]]) -> list[tuple]:
    return [(r["symbol"], r["exchange"], r["trade_id"]) for r in rows]


def stats(server: RunningServer) -> dict[str, Any]:
    return requests.get(f"{server.rest_url}/_synthetic/stats", timeout=10).json()  # type: ignore[no-any-return]


def test_session_streamed_end_to_end_counts_match(services: AppSettings, prefix: str) -> None:
    with synthetic_server(server_args()) as server:
        proc = run_ingest(server, prefix)
        sent = stats(server)["sent"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    trades = records(services, prefix, "market_trades")
    quotes = records(services, prefix, "market_quotes")
    bars = records(services, prefix, "bars_1m")
    assert len(trades) == sent["T"]
    assert len(quotes) == sent["Q"]
    assert len(bars) == sent["AM"]
    assert set(trade_keys(trades)) == expected_trades()
    assert all(b["aggregated_from"] == "polygon_am" for b in bars)
    assert all(r["source"] == "ws" for r in trades + quotes)
    # venue event time, in order per symbol; ts_ingest is the local receipt time (after the event time here)
    for symbol in ("SPY", "QQQ"):
        ts = [r["ts"] for r in quotes if r["symbol"] == symbol]
        assert ts == sorted(ts)
    assert all(r["ts_ingest"] > r["ts"] for r in trades)


def test_disconnect_mid_burst_is_repaired_without_loss_or_duplicates(services: AppSettings, prefix: str) -> None:
    with synthetic_server(server_args("--disconnect-after", "6000", "--drop-events", "3000")) as server:
        proc = run_ingest(server, prefix)
        server_stats = stats(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert server_stats["disconnects"] == 1
    assert server_stats["dropped"]["T"] > 0
    trades = records(services, prefix, "market_trades")
    keys = trade_keys(trades)
    assert len(keys) == len(set(keys)), "duplicate trades"
    assert set(keys) == expected_trades(), "missing trades"
    dropped = set(server_stats["dropped_trade_ids"])
    repaired = {(r["symbol"], r["exchange"], r["trade_id"]) for r in trades if r["source"] == "rest"}
    assert dropped <= {trade_id for _, _, trade_id in repaired}
    quotes = records(services, prefix, "market_quotes")
    quote_keys = [(q["symbol"], q["seq"]) for q in quotes]
    assert len(quote_keys) == len(set(quote_keys))
    session = Session(DAY, ["SPY", "QQQ"], 11, *WINDOW)
    assert len(quotes) == sum(1 for ev in session.stream() if ev["ev"] == "Q")
    gaps = records(services, prefix, "ingest_gaps")
    trade_gaps = [g for g in gaps if g["kind"] == "trades" and g["reason"] == "reconnect"]
    assert trade_gaps, gaps
    assert all(g["status"] == "repaired" for g in gaps)
    assert sum(g["events_recovered"] for g in trade_gaps) == len(repaired)
    # every symbol's trades and quotes are repaired together, up to the first new trade or quote after the
    # reconnect (any symbol), and published before it in event-time order: a worker merging the streams by
    # event time waits for a quiet stream only until its partition is a grace past, so a repair published
    # later than that (a thin symbol's, at its own first new event) would be too old to apply
    ends = {(g["symbol"], g["kind"], g["ts_to"]) for g in gaps if g["reason"] == "reconnect"}
    assert {(symbol, kind) for symbol, kind, _ in ends} >= {
        (s, k) for s in ("SPY", "QQQ") for k in ("trades", "quotes")
    }
    assert len({end for _, kind, end in ends if kind in ("trades", "quotes")}) == 1, ends
    # in each partition, no repaired record is more than a second older than a record published before it
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    serde = AvroSerde(SchemaRegistry(services.registry), kafka, catalog())
    behind = 0
    for topic in ("market_trades", "market_quotes"):
        physical = kafka.topic(topic)
        newest: dict[int, int] = {}
        with RangeReader(kafka, f"t-order-{physical}") as reader:
            for raw in reader.read(physical, reader.bounds(physical)):
                r = serde.decode(raw.value, topic)
                if r["source"] == "rest" and r["ts"] < newest.get(raw.partition, 0) - 1_000_000_000:
                    behind += 1
                newest[raw.partition] = max(newest.get(raw.partition, 0), r["ts"])
    assert behind == 0
    assert "reconnect attempt 1" in proc.stdout


def test_duplicates_and_out_of_order_sequences_are_published_once(services: AppSettings, prefix: str) -> None:
    with synthetic_server(server_args("--duplicate-every", "40", "--reorder-every", "23")) as server:
        proc = run_ingest(server, prefix)
        server_stats = stats(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert server_stats["duplicated"] > 0
    trades = records(services, prefix, "market_trades")
    keys = trade_keys(trades)
    assert len(keys) == len(set(keys))
    assert set(keys) == expected_trades()
    seqs = [t["seq"] for t in trades if t["symbol"] == "SPY"]
    assert seqs != sorted(seqs), "the server reordered some events; they are kept in arrival order"
    assert f"{server_stats['duplicated']} duplicates dropped" in proc.stdout


def test_malformed_events_go_to_the_dlq_and_unknown_ones_are_warned(services: AppSettings, prefix: str) -> None:
    with synthetic_server(server_args("--malformed-every", "97", "--unknown-every", "500")) as server:
        proc = run_ingest(server, prefix)
        server_stats = stats(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dead = dlq_messages(services, f"{prefix}market_trades.dlq")
    assert len(dead) == server_stats["malformed"] > 0
    headers = dict(dead[0].headers())
    assert b"T.p: missing" in headers["error"]
    assert headers["source_topic"] == f"{prefix}market_trades".encode()
    raw = json.loads(dead[0].value())
    assert raw["ev"] == "T"
    assert "p" not in raw
    trades = records(services, prefix, "market_trades")
    dead_ids = {(json.loads(m.value())["sym"], json.loads(m.value())["x"], json.loads(m.value())["i"]) for m in dead}
    assert set(trade_keys(trades)) | dead_ids == expected_trades()
    assert "ignoring unsubscribed event type 'LULD'" in proc.stdout
    assert "ignoring events for unsubscribed symbol 'ZZZZ'" in proc.stdout


def test_a_huge_non_json_frame_and_far_future_events_are_dead_lettered(services: AppSettings, prefix: str) -> None:
    """A 1,000,000-byte frame that is not JSON is dead-lettered cut to the limit with its original size (it
    used to fail with MSG_SIZE_TOO_LARGE and crash ingest); trades stamped ten years ahead of the venue clock
    are dead-lettered and leave de-duplication and gap checks alone."""
    from connectors.synthetic.faults import TEN_YEARS_MS

    args = server_args("--garbage-after", "2000", "--garbage-bytes", "1000000", "--future-every", "211")
    with synthetic_server(args) as server:
        proc = run_ingest(server, prefix)
        server_stats = stats(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert server_stats["garbage"] == 1
    assert server_stats["future"] > 0
    dead = dlq_messages(services, f"{prefix}market_trades.dlq")
    frames = [m for m in dead if dict(m.headers()).get("truncated") == b"true"]
    assert len(frames) == 1
    headers = dict(frames[0].headers())
    assert headers["original_size"] == b"1000000"
    assert frames[0].value() == b"<" * services.kafka.dead_letter_max_bytes
    assert b"frame is not JSON" in headers["error"]
    future = [json.loads(m.value()) for m in dead if m is not frames[0]]
    assert len(future) == server_stats["future"]
    assert all(b"ahead of the venue clock" in dict(m.headers())["error"] for m in dead if m is not frames[0])
    trades = records(services, prefix, "market_trades")
    shifted = {(e["sym"], e["x"], e["i"]) for e in future}
    assert not shifted & set(trade_keys(trades))  # none of them published...
    assert set(trade_keys(trades)) | shifted == expected_trades()  # ...and nothing else lost
    assert all(e["t"] > TEN_YEARS_MS for e in future)
    next_day = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert max(r["ts"] for r in trades) < next_day.timestamp() * 1e9
    gaps = records(services, prefix, "ingest_gaps")
    assert gaps == []  # no gap repair was started by an outlier


def test_rest_errors_are_retried_during_repair(services: AppSettings, prefix: str) -> None:
    args = server_args("--disconnect-after", "4000", "--drop-events", "1500", "--rest-fail", "2", "--rest-429", "2")
    with synthetic_server(args) as server:
        proc = run_ingest(server, prefix)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trades = records(services, prefix, "market_trades")
    assert set(trade_keys(trades)) == expected_trades()
    assert len(trades) == len(set(trade_keys(trades)))


def test_a_window_that_cannot_be_repaired_is_recorded(services: AppSettings, prefix: str, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("polygon:\n  repair_deadline_s: 2\n  rest_retries: 0\n")
    args = server_args("--disconnect-after", "4000", "--drop-events", "1500", "--rest-fail", "100000")
    with synthetic_server(args) as server:
        proc = run_ingest(server, prefix, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gaps = records(services, prefix, "ingest_gaps")
    unrepaired = [g for g in gaps if g["status"] == "unrepaired"]
    assert unrepaired
    assert all((g["error"] and "503" in g["error"]) or "synthetic outage" in (g["error"] or "") for g in unrepaired)
    assert all(g["events_recovered"] == 0 for g in unrepaired)


def test_auth_failure_exits_2_without_printing_the_key(services: AppSettings, prefix: str) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with synthetic_server(server_args()) as server:
        proc = run_ingest(server, prefix, key=wrong)
    assert proc.returncode == 2
    assert "Polygon rejected the API key" in proc.stderr
    assert wrong not in proc.stderr + proc.stdout


def test_options_chain_snapshots(services: AppSettings, prefix: str) -> None:
    with synthetic_server(server_args(symbols="SPY", window=("10:00", "10:03"))) as server:
        proc = run_ingest(server, prefix, "--symbols", "SPY", "--options")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(services, prefix, "options_chain")
    assert rows
    assert {r["underlying"] for r in rows} == {"SPY"}
    assert {r["contract_type"] for r in rows} == {"call", "put"}
    assert {r["expiration"] for r in rows} == {DAY, dt.date(2026, 11, 23)}  # 0dte and the next session
    assert any(r["delta"] is None and r["iv"] is None for r in rows), "deep OTM rows come without greeks"
    assert all(r["delta"] != 0 for r in rows if r["delta"] is not None)
    with_greeks = [r for r in rows if r["delta"] is not None]
    assert all(0 < r["delta"] <= 1 for r in with_greeks if r["contract_type"] == "call")
    spot = rows[0]["underlying_price"]
    assert all(abs(r["strike"] / spot - 1) <= 0.021 for r in rows)
    keys = [(r["contract_symbol"], r["ts"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_backfill_publishes_each_event_once_and_resumes(services: AppSettings, prefix: str) -> None:
    env_base = {"POLYGON_API_KEY": KEY, "SCALP_TOPIC_PREFIX": prefix}
    with synthetic_server(server_args(window=("09:30", "09:36"))) as server:
        env = {**env_base, "POLYGON_REST_URL": server.rest_url}
        first = scalp(
            "backfill",
            "--symbols",
            "SPY",
            "--from",
            "2026-11-20T09:30:00-05:00",
            "--to",
            "2026-11-20T09:33:00-05:00",
            env=env,
        )
        assert first.returncode == 0, first.stderr[-3000:]
        whole = scalp(
            "backfill",
            "--symbols",
            "SPY",
            "--from",
            "2026-11-20T09:30:00-05:00",
            "--to",
            "2026-11-20T09:36:00-05:00",
            env=env,
        )
        assert whole.returncode == 0, whole.stderr[-3000:]
        again = scalp("backfill", "--symbols", "SPY", "--from", "2026-11-20", "--to", "2026-11-21", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
    session = Session(DAY, ["SPY"], 11, "09:30", "09:36")
    events = list(session.stream())
    n_trades = sum(1 for e in events if e["ev"] == "T")
    n_quotes = sum(1 for e in events if e["ev"] == "Q")
    n_bars = sum(1 for e in events if e["ev"] == "AM")
    trades = records(services, prefix, "market_trades")
    assert len(trades) == n_trades == len(set(trade_keys(trades)))
    assert len(records(services, prefix, "market_quotes")) == n_quotes
    bars = records(services, prefix, "bars_1m")
    assert len(bars) == n_bars
    assert all(b["aggregated_from"] == "rest" for b in bars)
    assert all(t["source"] == "rest" for t in trades)
    assert f"backfill SPY trades: {n_trades} fetched, 0 published, {n_trades} already in Kafka" in again.stdout
    published_whole = int(whole.stdout.split("backfill SPY trades: ")[1].split(" fetched, ")[1].split()[0])
    assert 0 < published_whole < n_trades  # only the second half was new


def test_backfill_rejects_bad_input(services: AppSettings) -> None:
    proc = scalp(
        "backfill",
        "--symbols",
        "SPY",
        "--from",
        "2026-11-20T09:30:00",
        "--to",
        "2026-11-21",
        env={"POLYGON_API_KEY": "x"},
    )
    assert proc.returncode == 2
    assert "UTC offset" in proc.stderr
    proc = scalp(
        "backfill", "--symbols", "SPY", "--from", "2026-11-21", "--to", "2026-11-20", env={"POLYGON_API_KEY": "x"}
    )
    assert proc.returncode == 2
    proc = scalp(
        "backfill",
        "--symbols",
        "SPY",
        "--from",
        "2026-11-20",
        "--to",
        "2026-11-21",
        "--kinds",
        "ticks",
        env={"POLYGON_API_KEY": "x"},
    )
    assert proc.returncode == 2
    assert "ticks" in proc.stderr


def test_synthetic_session_is_deterministic(services: AppSettings, prefix: str) -> None:
    args = ["ingest", "synthetic", "--date", DAY.isoformat(), "--start", "09:30", "--end", "09:33", "--seed", "5"]
    runs = {}
    for tag, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        proc = scalp(*args[:-1], seed, env={"SCALP_TOPIC_PREFIX": f"{prefix}{tag}"})  # cleaned up with `prefix`
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[tag] = {
            t: raw_messages(services.kafka, f"{prefix}{tag}{t}") for t in ("market_trades", "market_quotes", "bars_1m")
        }
    for topic in ("market_trades", "market_quotes", "bars_1m"):
        assert runs["a"][topic], topic
        assert runs["a"][topic] == runs["b"][topic], topic
        assert runs["a"][topic] != runs["c"][topic], topic
    # the same session again into the same topics publishes nothing twice
    again = scalp(*args, env={"SCALP_TOPIC_PREFIX": f"{prefix}a"})
    assert again.returncode == 0, again.stderr[-3000:]
    total = sum(len(runs["a"][t]) for t in ("market_trades", "market_quotes", "bars_1m"))
    assert "published trades=0 quotes=0 bars=0" in again.stdout + again.stderr
    assert f"{total} duplicates dropped" in again.stdout + again.stderr
    for topic in ("market_trades", "market_quotes", "bars_1m"):
        assert raw_messages(services.kafka, f"{prefix}a{topic}") == runs["a"][topic], topic


def raw_messages(kafka: KafkaSettings, physical: str) -> list[tuple[int, bytes | None, bytes | None, int]]:
    """(partition, key, value minus the schema id, timestamp) of every message, partition by partition."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": "t-raw", "enable.auto.commit": False}
    )
    out: list[tuple[int, bytes | None, bytes | None, int]] = []
    try:
        meta = consumer.list_topics(physical, timeout=10).topics[physical]
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(physical, p, low)])
            got = 0
            while got < high - low:
                msg = consumer.poll(5)
                assert msg is not None
                value = msg.value()
                out.append((p, msg.key(), value[5:] if value else value, msg.timestamp()[1]))
                got += 1
    finally:
        consumer.close()
    return out


def test_counter_sanity() -> None:
    """The generator's quotes outnumber trades several times (microstructure the strategy relies on)."""
    counts = Counter(ev["ev"] for ev in Session(DAY, ["SPY"], 11, *WINDOW).stream())
    assert counts["Q"] > 3 * counts["T"] > 0


def test_a_live_worker_applies_every_repaired_event_after_reconnects(
    services: AppSettings, prefix: str, tmp_path: Path
) -> None:
    """The streams worker runs while the ingest reads a venue that drops the WebSocket twice (20,000 events
    lost each time, repaired from REST). A thin symbol's first new trade can come long after its quotes
    resume; its repaired trades must still reach Kafka before any newer event of the symbol, or the worker
    (merging trades and quotes by event time) finds them older than what it applied and leaves them out."""
    symbols = ",".join(f"S{i:03d}" for i in range(40))  # the synthetic market: dense and thin symbols
    args = server_args("--speed", "3", "--disconnect-after", "30000,90000", "--drop-events", "20000",
                       symbols=symbols, window=("12:00", "12:06"))  # fmt: skip
    env = {**os.environ, "SCALP_TOPIC_PREFIX": prefix, "SCALP_STATE_DIR": str(tmp_path), "SCALP_LOG_DIR": str(tmp_path)}
    created = scalp("topics", "create", env=env)
    assert created.returncode == 0, created.stderr[-2000:]
    log = tmp_path / "streams.out"  # a file, not a pipe nobody reads while the session runs
    with log.open("w") as sink:
        worker = subprocess.Popen([sys.executable, "-m", "scalp.cli", "streams", "--until-idle", "20"],
                                  env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    try:
        time.sleep(10)  # the worker joins its group before the session starts
        with synthetic_server(args) as server:
            proc = run_ingest(server, prefix, "--symbols", symbols)
        assert proc.returncode == 0, proc.stderr[-3000:]
        worker.wait(timeout=600)
    finally:
        worker.kill()
    out = log.read_text()
    assert worker.returncode == 0, out[-4000:]
    summary = next(line for line in out.splitlines() if " events in " in line)
    session = Session(DAY, symbols.split(","), 11, "12:00", "12:06")
    published = sum(1 for ev in session.stream() if ev["ev"] in ("T", "Q"))  # each once, the dropped repaired
    assert summary.startswith(f"streams: {published} events in"), (published, summary)
    assert " 0 late " in summary, summary
