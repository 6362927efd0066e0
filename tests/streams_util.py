"""Helpers for stream-processing tests: a synthetic tape in Kafka, the core-only run of it, outputs read back."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from connectors.synthetic.records import session_records
from kafkaio.producer import AvroProducer
from kafkaio.reader import read_topic
from kafkaio.settings import KafkaSettings
from scalp.settings import DEFAULT_CONFIG
from schemas.serde import AvroSerde
from streams.core.digests import Digests, source_commit
from streams.core.pipeline import CoreParts, StrategyCore
from streams.core.policy import POLICY_FILE, load_policy

REPO = Path(__file__).resolve().parents[1]
# two windows: the first warms the EMAs and gives rvol a prior session, the second is where setups fire
WINDOWS = ((dt.date(2026, 11, 19), "15:30", "16:00"), (dt.date(2026, 11, 20), "09:30", "10:00"))
SYMBOLS = ["SPY", "QQQ"]


def loose_policy(tmp: Path) -> Path:
    """The shipped policy, loosened so that a short tape yields signals of several setups."""
    data = yaml.safe_load(POLICY_FILE.read_text())
    data["features"]["warmup_days"] = 0
    data["filters"].update(require_warm=False, no_trade_open_minutes=1, min_rvol=0.0)
    for setup in data["setups"].values():
        setup["cooldown_s"] = 60
    data["setups"]["hod_lod_breakout"]["min_range_minutes"] = 5
    data["setups"]["hod_lod_breakout"]["filters"] = {}
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def tape(seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for day, start, end in WINDOWS:
        out.extend(session_records(day, SYMBOLS, seed, start, end))
    return out


def produce(
    kafka: KafkaSettings, serde: AvroSerde, records: list[tuple[str, dict[str, Any]]], poison_at: int | None = None
) -> None:
    """Publish the tape; ``poison_at``: also a value that is not Avro, into SPY's quotes, at that index."""
    producer = AvroProducer(kafka, serde)
    for i, (topic, record) in enumerate(records):
        if i == poison_at:
            producer.send(kafka.topic("market_quotes"), b"not avro at all", b"SPY", record["ts"] // 1_000_000)
        producer.produce(topic, record)
    producer.flush(120)


def raw_messages(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every message of a physical topic, undecoded."""
    import uuid

    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.subscribe([topic])
    out, eof = [], set()
    while len(eof) < len(metadata.partitions):
        msg = consumer.poll(10)
        if msg is None:
            break
        if msg.error() is not None:
            eof.add(msg.partition())
            continue
        out.append(msg)
    consumer.close()
    return out


def core_outputs(policy_path: Path, records: list[tuple[str, dict[str, Any]]], env_hash: str) -> dict[str, list[Any]]:
    policy = load_policy(policy_path)
    core = StrategyCore(CoreParts.create(policy, Digests(source_commit(), policy.digest, env_hash)))
    out: dict[str, list[Any]] = {}
    for topic, record in records:
        for t, r in core.on_trade(record) if topic == "market_trades" else core.on_quote(record):
            out.setdefault(t, []).append(r)
    for t, r in core.finish():
        out.setdefault(t, []).append(r)
    return out


def read_back(kafka: KafkaSettings, serde: AvroSerde, topic: str, key: Any) -> list[dict[str, Any]]:
    """Every record of ``topic``, one per ``key(record)`` (a re-emitted record must equal the first)."""
    seen: dict[Any, dict[str, Any]] = {}
    for record in read_topic(kafka, serde, topic):
        k = key(record)
        if k in seen:
            diff = {f: (seen[k].get(f), record.get(f)) for f in record if seen[k].get(f) != record.get(f)}
            assert not diff, f"{topic}: re-emitted record differs for {k}: (first, again) {diff}"
        seen[k] = record
    return [seen[k] for k in sorted(seen)]


def worker_config(tmp: Path) -> Path:
    """The shipped config without the metrics port (tests run two workers side by side)."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data.setdefault("streams", {})["http_port"] = 0
    config = tmp / "streams-config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def streams_cmd(policy: Path, *args: str) -> list[str]:
    """`scalp streams` with ``policy`` and the config of :func:`worker_config` next to it."""
    config = worker_config(policy.parent)
    return [sys.executable, "-m", "scalp.cli", "--config", str(config), "streams", "--policy", str(policy), *args]


def start_streams(policy: Path, prefix: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        streams_cmd(policy, *args),
        env={**os.environ, "SCALP_TOPIC_PREFIX": prefix},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
