"""Helpers for sink tests: a migrated fresh database, prefixed topics, producing, running `scalp sink`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

from kafkaio.producer import AvroProducer
from kafkaio.registry import SchemaRegistry
from kafkaio.settings import KafkaSettings
from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from sinks.migrate import migrate

REPO = Path(__file__).resolve().parents[1]


def migrated(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


def sink_config(tmp: Path, instance: str | None = None, **extra: Any) -> Path:
    """A config for sink processes of one test: its own consumer group (tests must not share one)."""
    lines = [
        "sink:",
        "  http_port: 0",
        "  session_timeout_ms: 6000",
        "  batch_max_rows: 20000",
        f"  group_id: test-{uuid.uuid5(uuid.NAMESPACE_URL, str(tmp)).hex[:12]}",
    ]
    if instance:
        lines.append(f"  instance_id: {instance}")
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    path = tmp / f"sink-{instance or 'x'}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sink_env(dsn: str, prefix: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": dsn, "SCALP_TOPIC_PREFIX": prefix}


def start_sink(config: Path, dsn: str, prefix: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scalp.cli", "--config", str(config), "sink", *args],
        env=sink_env(dsn, prefix),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def producer_for(services: AppSettings, prefix: str) -> tuple[AvroProducer, KafkaSettings, AvroSerde]:
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    serde = AvroSerde(SchemaRegistry(services.registry), kafka, catalog())
    return AvroProducer(kafka, serde), kafka, serde


def quotes(n: int) -> list[dict[str, Any]]:
    from benchmarks.sink_bench import quote_records

    return list(quote_records(n))


def scalar(dsn: str, query: str, *params: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params or None).fetchone()
        return row[0] if row else None
