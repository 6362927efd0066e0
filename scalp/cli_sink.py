"""`scalp sink`: the storage worker, its status and the dead-letter report."""

from __future__ import annotations

import logging

import click
from rich.console import Console
from rich.table import Table

from kafkaio.errors import ConfigError

from .cliutil import guarded, metrics_port_option
from .context import Context

log = logging.getLogger("scalp.sink")


@click.command()
@metrics_port_option("sink", 9464)
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
    sink.http_port (default 9464; --metrics-port overrides it; 0 disables).
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
    from sinks.service import run_sink

    settings = context.settings
    state = run_sink(
        settings.kafka,
        settings.database.role("sink"),
        settings.sink,
        context.serde,
        context.catalog,
        topics,
        until_idle,
    )
    elapsed = (state.last_commit - state.first_message) if state.first_message and state.last_commit else 0.0
    click.echo(
        f"sink: {state.rows_written} rows written ({state.fast_rows} through the fast path, {state.fallbacks} "
        f"batches written row by row after it refused them) in {elapsed:.2f}s (first message to last commit)"
    )


def _status(context: Context, topics: list[str]) -> None:
    from sinks.status import lag

    settings = context.settings
    table = Table("topic", "partition", "stored next offset", "end offset", "lag", "last write")
    rows = lag(settings.kafka, settings.database.role("analyst"), settings.sink.group_id, topics)
    for row in rows:
        updated = row.updated.isoformat(timespec="seconds") if row.updated else "-"
        table.add_row(row.topic, str(row.partition), str(row.stored), str(row.end), str(row.lag), updated)
    Console(width=160).print(table)
    click.echo(f"group {settings.sink.group_id}: total lag {sum(r.lag for r in rows)}")


def _dlq_report(context: Context, topics: list[str]) -> None:
    from sinks.status import dead_letters

    counts = dead_letters(context.settings.kafka, context.catalog, topics)
    table = Table("dead-letter topic", "records", "reason (first 100 chars)", "count")
    for name, reasons in counts.items():
        first = True
        for reason, count in reasons.most_common():
            table.add_row(name if first else "", str(sum(reasons.values())) if first else "", reason, str(count))
            first = False
    Console(width=200).print(table)
    click.echo(f"dead letters: {sum(sum(r.values()) for r in counts.values())} in {len(counts)} topics")
