"""`scalp sink`: the storage worker, its status and the dead-letter report."""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kafkaio.errors import ConfigError

from .cliutil import guarded
from .context import Context

log = logging.getLogger("scalp.sink")


@click.command()
@click.option("--topics", "topic_spec", default="all", show_default=True, help="'all' or a comma-separated list.")
@click.option("--status", is_flag=True, help="Print stored offsets, end offsets and lag per partition, then exit.")
@click.option("--dlq-report", is_flag=True, help="Summarise the dead-letter topics, then exit.")
@click.option(
    "--until-idle",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Exit once caught up and idle this long (batch jobs, demo); default: run until SIGTERM.",
)
@click.pass_context
def sink(ctx: click.Context, topic_spec: str, status: bool, dlq_report: bool, until_idle: float | None) -> None:
    """Write topics into their tables exactly once (offsets stored with the rows in PostgreSQL).

    Runs until SIGTERM/SIGINT, which flush the current batch. /metrics and /healthz are served on
    sink.http_port (default 9464; 0 disables).
    """

    def run() -> None:
        context: Context = ctx.obj
        specs = context.catalog.select(topic_spec)
        if not specs:
            raise ConfigError("--topics: no topics selected")
        names = [s.name for s in specs]
        if status:
            _status(context, names)
        elif dlq_report:
            _dlq_report(context, names)
        else:
            _run(context, names, until_idle)

    guarded(run)()


def _run(context: Context, topics: list[str], until_idle: float | None) -> None:
    from kafkaio.admin import TopicAdmin
    from sinks.metrics import serve
    from sinks.worker import SinkWorker

    settings = context.settings
    TopicAdmin(settings.kafka, context.catalog).create_all()
    worker = SinkWorker(settings.kafka, settings.database, settings.sink, context.serde, context.catalog, topics)

    def health() -> tuple[bool, dict[str, Any]]:
        state = worker.state
        detail = {
            "status": "paused: database unavailable" if state.paused else "ok",
            "assigned": [f"{t}[{p}]" for t, p in state.assigned],
            "buffered": state.buffered,
            "rows_written": state.rows_written,
            "last_flush_age_s": round(time.monotonic() - state.last_flush, 1),
            "last_error": state.last_error,
        }
        return not state.paused, detail

    server = (
        serve(worker.metrics, health, settings.sink.http_host, settings.sink.http_port)
        if settings.sink.http_port
        else None
    )

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: flushing and leaving the group", signal.Signals(signum).name)
        worker.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run(idle_exit_s=until_idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.shutdown()
    state = worker.state
    elapsed = (state.last_commit - state.first_message) if state.first_message and state.last_commit else 0.0
    click.echo(
        f"sink: {state.rows_written} rows written ({state.fast_rows} through the fast path, {state.fallbacks} "
        f"batches written row by row after it refused them) in {elapsed:.2f}s (first message to last commit)"
    )


def _status(context: Context, topics: list[str]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from sinks.db import connect

    settings = context.settings
    physical = [settings.kafka.topic(t) for t in topics]
    with connect(settings.database) as conn:
        rows = conn.execute(
            "SELECT topic, partition, next_offset, updated_at FROM sink_offsets "
            "WHERE group_id = %s AND topic = ANY(%s)",
            (settings.sink.group_id, physical),
        ).fetchall()
    stored = {(t, p): (o, u) for t, p, o, u in rows}
    consumer = Consumer({**settings.kafka.client_config(), "group.id": "scalp-sink-status"})
    table = Table("topic", "partition", "stored next offset", "end offset", "lag", "last write")
    total = 0
    try:
        meta = consumer.list_topics(timeout=10)
        for name in physical:
            if name not in meta.topics:
                continue
            for p in sorted(meta.topics[name].partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                offset, updated = stored.get((name, p), (0, None))
                lag = max(0, high - offset)
                total += lag
                table.add_row(
                    name,
                    str(p),
                    str(offset),
                    str(high),
                    str(lag),
                    updated.isoformat(timespec="seconds") if updated else "-",
                )
    finally:
        consumer.close()
    Console(width=160).print(table)
    click.echo(f"group {settings.sink.group_id}: total lag {total}")


def _dlq_report(context: Context, topics: list[str]) -> None:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    settings = context.settings
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "scalp-dlq-report",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    table = Table("dead-letter topic", "records", "reason (first 100 chars)", "count")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    try:
        meta = consumer.list_topics(timeout=10)
        for topic in topics:
            name = settings.kafka.topic(context.catalog[topic].dlq)
            if name not in meta.topics:
                continue
            parts = []
            for p in meta.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                if high > low:
                    parts.append((p, low, high))
            if not parts:
                continue
            consumer.assign([TopicPartition(name, p, low) for p, low, _ in parts])
            remaining = {p: high for p, _, high in parts}
            while remaining:
                for msg in consumer.consume(500, timeout=2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.pop(msg.partition() or 0, None)
                        continue
                    headers = dict(msg.headers() or [])
                    raw = headers.get("error") or b"?"
                    reason = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))[:100]
                    counts[name][reason] += 1
                    if (msg.offset() or 0) >= remaining.get(msg.partition() or 0, 0) - 1:
                        remaining.pop(msg.partition() or 0, None)
    finally:
        consumer.close()
    for name, reasons in counts.items():
        first = True
        for reason, count in reasons.most_common():
            table.add_row(name if first else "", str(sum(reasons.values())) if first else "", reason, str(count))
            first = False
    Console(width=200).print(table)
    click.echo(f"dead letters: {sum(sum(r.values()) for r in counts.values())} in {len(counts)} topics")
