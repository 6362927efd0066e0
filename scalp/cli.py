"""The `scalp` command line (a contract: see the README). Exit codes: 0 ok, 2 usage/config, 1 runtime failure."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from kafkaio.errors import ConfigError

from .cliutil import fail, guarded
from .context import Context
from .logs import setup_logging
from .settings import load_settings

log = logging.getLogger("scalp")
VERSION_HELP = "Show the version and the build of the hot path (compiled with mypyc, or pure Python), and exit."
SERVICES = frozenset({"sink", "streams", "ingest", "execute"})  # long-running: every log line on stdout
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from importlib.metadata import version

        from .build import describe  # compiled with mypyc, or pure Python

        click.echo(f"scalp, version {version('scalp-pipeline')} ({describe()})")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version, help=VERSION_HELP)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Settings file (default: $SCALP_CONFIG, else the packaged config/pipeline.yaml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level (default: $SCALP_LOG_LEVEL, else logging.level: INFO). Interactive commands show only "
    "warnings on stdout unless a level is given here or in SCALP_LOG_LEVEL; their log file has every line.",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, log_level: str | None) -> None:
    """scalp-pipeline: capture, stream, store and replay an intraday SPY/QQQ scalping session."""
    import os

    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        fail(str(exc), 2)
    context = Context(settings)
    service = ctx.invoked_subcommand or "scalp"
    logs = settings.logging
    asked = log_level is not None or bool(os.environ.get("SCALP_LOG_LEVEL"))
    setup_logging(
        log_level or logs.level,
        (logs.dir or settings.stack.state_dir / "logs") if logs.file else None,
        logs.file_name,
        secrets=context.secrets(),
        service=service,
        stream_level=None if service in SERVICES or asked else "WARNING",
        max_bytes=logs.max_mb * 1024 * 1024,
        backups=logs.backups,
    )
    log.debug("settings digest %s", settings.digest())
    ctx.obj = context


# --- stack -------------------------------------------------------------------------------------


@main.group()
def stack() -> None:
    """The local Kafka + Apicurio Registry + PostgreSQL, without Docker."""


def _stack(ctx: click.Context, secure: bool | None = None) -> Any:
    """The stack in the mode asked for, else the mode it was last brought up in (stack.mode)."""
    from .stack.manager import Stack

    settings = ctx.obj.settings
    if secure is None:
        mode = settings.stack.state_dir / "stack.mode"
        secure = mode.read_text().strip() == "secure" if mode.exists() else settings.stack.secure
    ports = {
        "ingest": settings.polygon.http_port,
        "streams": settings.streams.http_port,
        "sink": settings.sink.http_port,
        "execute": settings.execution.http_port,
    }
    return Stack(settings.stack.model_copy(update={"secure": secure}), settings.kafka.topic_prefix, ports)


@stack.command("up")
@click.option(
    "--secure",
    is_flag=True,
    help="The secured stack: Kafka over SASL_SSL (SCRAM-SHA-512) with an ACL per service principal, the "
    "registry over TLS, on certificates and passwords it generates under <state dir>/secure. Without it, the "
    "plain stack (the default, for the demo).",
)
@click.option(
    "--monitoring",
    is_flag=True,
    help="Also Prometheus (Debian's package), on 127.0.0.1:19090: it scrapes the pipeline's processes on "
    "this machine (their metrics ports) and evaluates the alert rules.",
)
@click.pass_context
@guarded
def stack_up(ctx: click.Context, secure: bool, monitoring: bool) -> None:
    """Install what is missing (cached), start every service and wait until each answers. Idempotent."""
    results = _stack(ctx, secure).up(report=lambda line: click.echo(line, err=True), monitoring=monitoring)
    started = [name for name, did in results if did]
    click.echo(f"stack up: {', '.join(started) + ' started' if started else 'already running'}")


@stack.command("down")
@click.pass_context
@guarded
def stack_down(ctx: click.Context) -> None:
    """Stop every service (data is kept under the state dir)."""
    _stack(ctx).down(report=click.echo)


@stack.command("status")
@click.pass_context
@guarded
def stack_status(ctx: click.Context) -> None:
    """Report each service; exit 1 if any is not healthy."""
    statuses = _stack(ctx).status()
    table = Table("service", "state", "pid", "address", "detail")
    for s in statuses:
        state = "healthy" if s.healthy else ("running, not answering" if s.running else "stopped")
        table.add_row(s.name, state, str(s.pid or "-"), s.address, s.detail)
    out.print(table)
    if not all(s.healthy for s in statuses):
        sys.exit(1)


@stack.command("timescaledb")
@click.pass_context
@guarded
def stack_timescaledb(ctx: click.Context) -> None:
    """Build and install TimescaleDB from its release source, once (cached per version).

    The tarball is stack.timescaledb_tarball (SCALP_TIMESCALEDB_TARBALL: a path or URL), by default the
    vendored ../shared/vendor/timescaledb-<version>.tar.gz next to the checkout when it exists, else
    Timescale's release archive. Needs cmake, gcc, make and postgresql-server-dev-15, and writes into
    PostgreSQL's own directories (root). `scalp stack up` then preloads it. Exit 1 naming the step that
    failed; the stack then runs plain PostgreSQL.
    """
    from .stack.timescaledb import TimescaleBuild

    build = TimescaleBuild(ctx.obj.settings.stack)
    built = build.ensure(report=lambda line: click.echo(line, err=True))
    click.echo(f"timescaledb {build.version}: {'built and installed' if built else 'installed (cached)'}")


@stack.command("env")
@click.option(
    "--role",
    default=None,
    help="Secured stack: the settings of one principal (ingest, streams, execute, sink, analyst); default the "
    "operator (admin).",
)
@click.pass_context
@guarded
def stack_env(ctx: click.Context, role: str | None) -> None:
    """Print `export` lines for the local stack (use: eval "$(scalp stack env)"); for the secured stack,
    everything its clients need, passwords included (never logged)."""
    for handler in logging.getLogger().handlers:  # stdout is for the export lines: log lines go to stderr
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    for name, value in _stack(ctx).env(role).items():
        click.echo(f"export {name}={shlex.quote(value)}")


# --- db ----------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema and upkeep."""


@db.command("migrate")
@click.pass_context
@guarded
def db_migrate(ctx: click.Context) -> None:
    """Apply pending migrations (idempotent); TimescaleDB features when the extension exists."""
    from sinks.migrate import migrate_database

    result = migrate_database(ctx.obj.settings.database)
    click.echo(
        f"migrate ({result.flavour}): {len(result.applied)} applied"
        f"{' (' + ', '.join(result.applied) + ')' if result.applied else ''}, "
        f"{len(result.skipped)} already applied"
    )


@db.command("maintain")
@click.option("--retention-days", type=int, default=30, show_default=True, help="Keep ticks this many days.")
@click.option(
    "--archive-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the ticks about to be dropped to Parquet here first (verified before dropping; default: "
    "$SCALP_ARCHIVE_DIR).",
)
@click.option("--dry-run", is_flag=True, help="Print what would happen; change nothing.")
@click.pass_context
@guarded
def db_maintain(ctx: click.Context, retention_days: int, archive_dir: Path | None, dry_run: bool) -> None:
    """Tick retention (after a minute-bar rollup and an optional Parquet archive), partition upkeep on plain
    PostgreSQL, compression on TimescaleDB. Schedule it daily (docs/operations.md)."""
    import datetime as dt

    from sinks.archive import NEW_YORK
    from sinks.maintain import excluded_codes, maintain_database

    if retention_days < 1:
        raise ConfigError("--retention-days must be at least 1")
    settings = ctx.obj.settings
    archive_dir = archive_dir or settings.database.archive_dir
    now = dt.datetime.now(dt.UTC)
    conditions = settings.streams.conditions_file
    excluded_codes(conditions)  # a broken table: exit 2 before touching the database
    report = maintain_database(settings.database, retention_days, archive_dir, dry_run, now, conditions)
    verb = "would" if dry_run else "did"
    cutoff = report.cutoff.astimezone(NEW_YORK)
    mode = "dry run" if dry_run else "applied"
    click.echo(f"maintain ({report.flavour}, cutoff {cutoff:%Y-%m-%d %H:%M %Z}, {mode}):")
    click.echo(f"  rollup: {verb} write {report.rolled_up_bars} minute bars (aggregated_from=trades_rollup)")
    for table, rows in report.to_drop.items():
        done = report.dropped.get(table)
        click.echo(f"  {table}: {rows} rows older than the cutoff" + (f", {done} dropped" if done is not None else ""))
    if report.archived:
        click.echo(f"  archive: {len(report.archived)} Parquet files, {sum(report.archived.values())} rows")
    if report.partitions:
        click.echo(f"  dropped partitions/chunks: {len(report.partitions)}")
    if report.compressed:
        click.echo(f"  compression jobs run: {report.compressed}")


@db.command("archive-migrate")
@click.option("--archive-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--dry-run", is_flag=True, help="Print what would be written; change nothing.")
@guarded
def db_archive_migrate(archive_dir: Path, dry_run: bool) -> None:
    """Rewrite an archive of the old layout (<table>/<SYMBOL>/<UTC day>.parquet, untyped) into the Hive layout
    that `db maintain` writes now (<table>/symbol=S/date=D/part-N.parquet by New York date, typed); each old
    file goes once its rows are in checked new files."""
    from sinks.archive import legacy_files, migrate_legacy

    found = legacy_files(archive_dir)
    written = migrate_legacy(archive_dir, dry_run)
    old = sum(len(files) for files in found.values())
    verb = "would write" if dry_run else "wrote"
    click.echo(f"archive-migrate: {old} files of the old layout; {verb} {len(written)} files, "
               f"{sum(written.values())} rows")  # fmt: skip


# --- topics ------------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Kafka topics from the catalog (schemas/topics.yaml)."""


@topics.command("create")
@click.option("--no-dlq", is_flag=True, help="Do not create the <topic>.dlq dead-letter topics.")
@click.pass_context
@guarded
def topics_create(ctx: click.Context, no_dlq: bool) -> None:
    """Create every catalog topic and register its schema (idempotent)."""
    from kafkaio.admin import TopicAdmin

    context: Context = ctx.obj
    created = TopicAdmin(context.settings.kafka, context.catalog).create_all(with_dlq=not no_dlq)
    for spec in context.catalog:
        context.serde.ensure_registered(spec.name)
    new = [name for name, did in created.items() if did]
    click.echo(
        f"topics: {len(new)} created, {len(created) - len(new)} already existed; "
        f"{len(context.catalog.names())} schemas registered"
    )


@topics.command("list")
@click.pass_context
@guarded
def topics_list(ctx: click.Context) -> None:
    """List topics with partitions, end offsets and message counts."""
    from kafkaio.admin import TopicAdmin

    context: Context = ctx.obj
    table = Table("topic", "partitions", "messages", "end offsets")
    for info in TopicAdmin(context.settings.kafka, context.catalog).list():
        table.add_row(info.name, str(info.partitions), str(info.messages), ",".join(map(str, info.end_offsets)))
    out.print(table)


# --- demo --------------------------------------------------------------------------------------


@topics.command("check")
@click.pass_context
@guarded
def topics_check(ctx: click.Context) -> None:
    """Round-trip one example record of every topic through the registry and Kafka (under the topic
    prefix ``check_``, so no example ever reaches the real topics)."""
    from kafkaio.admin import TopicAdmin
    from kafkaio.registry import SchemaRegistry
    from kafkaio.roundtrip import round_trip_all
    from schemas.serde import AvroSerde

    context: Context = ctx.obj
    settings = context.settings
    kafka = settings.kafka.model_copy(update={"topic_prefix": f"check_{settings.kafka.topic_prefix}"})
    TopicAdmin(kafka, context.catalog).create_all()
    serde = AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog)
    results = round_trip_all(kafka, serde, context.catalog)
    table = Table(
        "topic",
        "partition@offset",
        "schema id",
        "key",
        "bytes",
        "round trip",
        title="One record of every topic through the registry and Kafka",
    )
    for r in results:
        table.add_row(
            r.topic,
            f"{r.partition}@{r.offset}",
            str(r.schema_id),
            r.key,
            str(r.size),
            "[green]identical[/green]" if r.equal else "[red]DIFFERENT[/red]",
        )
    out.print(table)
    bad = [r.topic for r in results if not r.equal]
    if bad:
        fail(f"round trip changed records of {', '.join(bad)}", 1)
    click.echo(f"topics check: {len(results)}/{len(results)} topics round-tripped identically")


@main.command()
@click.option("--no-stack", is_flag=True, help="Use the services named in the environment; do not start any.")
@click.option(
    "--out", "runs", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Directory of runs."
)
@click.pass_context
@guarded
def demo(ctx: click.Context, no_stack: bool, runs: Path) -> None:
    """The main job: synthetic sessions through ingest, streams, paper execution and sinks, then a
    back-test (replay, labels, export, drift, HTML report) and a tuning proposal; prints where everything is.

    Topics use the prefix demo_ (SCALP_TOPIC_PREFIX when set); re-running writes nothing twice.
    """
    import time

    from kafkaio.admin import TopicAdmin
    from sinks.migrate import migrate_database

    from .demo import RUN_ID, Demo, demo_config, run_demo

    context: Context = ctx.obj
    settings = context.settings
    started = time.monotonic()
    if not no_stack:
        _stack(ctx).up(report=lambda line: click.echo(line, err=True))
    result = migrate_database(settings.database)
    click.echo(
        f"database: {result.flavour} flavour, {len(result.applied)} migrations applied, "
        f"{len(result.skipped)} already applied"
    )
    prefix = settings.kafka.topic_prefix or "demo_"
    kafka = settings.kafka.model_copy(update={"topic_prefix": prefix})
    created = TopicAdmin(kafka, context.catalog).create_all()
    click.echo(f"topics ({prefix}*): {sum(created.values())} created, {len(created) - sum(created.values())} existed")
    config = demo_config(ctx.parent.params.get("config_path") if ctx.parent else None, settings.stack.state_dir)
    session = Demo(prefix, config, runs.resolve())
    run_demo(session, lambda line: click.echo(f"[demo] {line}", err=True), kafka)
    click.echo("\nscalp demo: steps")
    for step in session.steps:
        click.echo(f"  {step.name:<18} {step.seconds:6.1f} s  {step.last_line}")
    click.echo("")
    for note in session.notes:
        click.echo(note)
    click.echo("")
    run_dir = session.runs / RUN_ID
    click.echo(f"topics: {prefix}<name> on {settings.kafka.bootstrap_servers} (`scalp topics list`, kaskade, Kafka UI)")
    click.echo(f"tables: {settings.database.safe_url} (features, signals, orders, fills, trade_ledger, ...)")
    click.echo(f"report: {run_dir / 'report' / 'index.html'}")
    click.echo(f"back-test run: {run_dir} (run.json, *.parquet, drift.json, signal_labels.parquet, dataset.parquet)")
    click.echo(f"tuning proposal: {run_dir / 'session_policies.proposed.yaml'} and {run_dir / 'tune_report.md'}")
    click.echo(f"demo: done in {time.monotonic() - started:.0f} s")


from .cli_backtest import backtest, report  # noqa: E402
from .cli_bench import bench  # noqa: E402
from .cli_config import config  # noqa: E402
from .cli_deploy import deploy  # noqa: E402
from .cli_execute import execute, flatten, halt, reduce, resume  # noqa: E402
from .cli_ingest import backfill, ingest  # noqa: E402
from .cli_research import drift, export, labels, replay  # noqa: E402
from .cli_sink import sink  # noqa: E402
from .cli_streams import streams  # noqa: E402
from .cli_top import top  # noqa: E402
from .cli_tune import tune  # noqa: E402

main.add_command(ingest)
main.add_command(backfill)
main.add_command(bench)
main.add_command(config)
main.add_command(sink)
main.add_command(streams)
main.add_command(execute)
main.add_command(deploy)
main.add_command(halt)
main.add_command(resume)
main.add_command(reduce)
main.add_command(flatten)
main.add_command(replay)
main.add_command(drift)
main.add_command(labels)
main.add_command(export)
main.add_command(tune)
main.add_command(backtest)
main.add_command(report)
main.add_command(top)

if __name__ == "__main__":
    main()
