"""`scalp bench <name>`: benchmarks against the real services; results are written to BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import click

from .cliutil import guarded
from .context import Context
from .stack.settings import REPO_ROOT

BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section of benchmark ``name`` in BENCHMARKS.md."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def publish(name: str, text: str, no_write: bool) -> None:
    """Print a benchmark's section and, unless ``no_write``, put it into BENCHMARKS.md."""
    click.echo(text)
    if not no_write:
        write_section(name, text)
        click.echo(f"written to {BENCHMARKS_MD}")


@click.group()
def bench() -> None:
    """Benchmarks (need the running stack); results go to BENCHMARKS.md."""


@bench.command("ingest")
@click.option("--events", type=int, default=300_000, show_default=True, help="Events for the throughput run.")
@click.option("--rate", type=float, default=10_000, show_default=True, help="Events/s for the latency run.")
@click.option("--seconds", type=float, default=15, show_default=True, help="Length of the latency run.")
@click.option("--no-write", is_flag=True, help="Print only; do not update BENCHMARKS.md.")
@click.pass_context
def bench_ingest(ctx: click.Context, events: int, rate: float, seconds: float, no_write: bool) -> None:
    """Socket receipt to acknowledged Kafka write: events/s, and p50/p99 latency at a steady rate,
    with a naive peer (JSON, one synchronous produce per event) side by side."""

    def run() -> None:
        from benchmarks import ingest_bench
        from kafkaio.registry import SchemaRegistry
        from schemas.serde import AvroSerde

        context: Context = ctx.obj
        settings = context.settings
        results = ingest_bench.run(
            settings.kafka,
            lambda kafka: AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog),
            context.catalog,
            events=events,
            latency_rate=rate,
            latency_seconds=seconds,
        )
        publish("ingest", ingest_bench.markdown(results), no_write)

    guarded(run)()


@bench.command("sink")
@click.option("--rows", type=int, default=500_000, show_default=True, help="Records pre-filled into the topic.")
@click.option("--naive-rows", type=int, default=20_000, show_default=True, help="Records the naive peer writes.")
@click.option("--no-write", is_flag=True, help="Print only; do not update BENCHMARKS.md.")
@click.pass_context
def bench_sink(ctx: click.Context, rows: int, naive_rows: int, no_write: bool) -> None:
    """Rows/s into the partitioned, indexed market_quotes with exactly-once on, one worker, with a naive
    peer and Quix Streams' PostgreSQL sink side by side (Quix is installed into .scalp/bench on first use)."""

    def run() -> None:
        from benchmarks import sink_bench
        from kafkaio.registry import SchemaRegistry
        from schemas.serde import AvroSerde

        context: Context = ctx.obj
        settings = context.settings
        results = sink_bench.run(
            settings.kafka,
            lambda kafka: AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog),
            context.catalog,
            settings.database.dsn,
            settings.registry.url,
            rows=rows,
            naive_rows=naive_rows,
        )
        publish("sink", sink_bench.markdown(results), no_write)

    guarded(run)()


@bench.command("streams")
@click.option("--events", type=int, default=300_000, show_default=True, help="Events for the throughput runs.")
@click.option(
    "--rate",
    "rates",
    type=float,
    multiple=True,
    default=(2_000, 10_000),
    show_default=True,
    help="Events/s of a latency run; repeat for several.",
)
@click.option("--seconds", type=float, default=15, show_default=True, help="Length of the latency run.")
@click.option("--no-write", is_flag=True, help="Print only; do not update BENCHMARKS.md.")
@click.pass_context
def bench_streams(ctx: click.Context, events: int, rates: tuple[float, ...], seconds: float, no_write: bool) -> None:
    """Events/s through the strategy core alone, through one Faust worker (`scalp streams`) and through a bare
    Faust agent (the peer), and the latency from an acknowledged input to its feature record at steady
    rates."""

    def run() -> None:
        from benchmarks import streams_bench
        from kafkaio.registry import SchemaRegistry
        from schemas.serde import AvroSerde

        context: Context = ctx.obj
        settings = context.settings
        results = streams_bench.run(
            settings.kafka,
            lambda kafka: AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog),
            context.catalog,
            events=events,
            latency_rates=rates,
            latency_seconds=seconds,
        )
        publish("streams", streams_bench.markdown(results), no_write)

    guarded(run)()


@bench.command("replay")
@click.option("--events", type=int, default=500_000, show_default=True, help="Events of the replayed tape.")
@click.option("--no-kafka", is_flag=True, help="Only the in-memory rows (no stack needed).")
@click.option("--no-compiled", is_flag=True, help="Only the pure-Python build (no compiled copy is built).")
@click.option("--no-write", is_flag=True, help="Print only; do not update BENCHMARKS.md.")
@click.pass_context
def bench_replay(ctx: click.Context, events: int, no_kafka: bool, no_compiled: bool, no_write: bool) -> None:
    """Events/s of a replay through the full core and the paper broker, one process, on two mornings (the
    first warms the second, so signals reach the router): in memory, the strategy core alone side by side,
    each on the checkout (pure Python) and on the compiled build (a copy of the checkout under <state
    dir>/bench-compiled, its hot path compiled with mypyc on first use: needs the dev extras and a C
    compiler), checking both give the same outputs byte for byte (exit 1 if not); and from Kafka (the tape in
    topics of its own: fetch, decode, replay order, then the replay)."""

    def run() -> None:
        from benchmarks import replay_bench
        from benchmarks.compiled import compiled_copy
        from kafkaio.registry import SchemaRegistry
        from schemas.serde import AvroSerde

        context: Context = ctx.obj
        settings = context.settings
        compiled = None if no_compiled else compiled_copy(settings.stack.state_dir / "bench-compiled")
        results = replay_bench.run(
            events,
            kafka=None if no_kafka else settings.kafka,
            serde_for=lambda kafka: AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog),
            catalog=context.catalog,
            compiled=compiled,
        )
        publish("replay", replay_bench.markdown(results), no_write)
        if not results["identical"]:
            raise click.ClickException("the pure and compiled builds gave different outputs")

    guarded(run)()


@bench.command("scaleout")
@click.option("--symbols", "n_symbols", type=click.IntRange(1, 5000), default=700, show_default=True,
              help="Symbols in the session.")  # fmt: skip
@click.option("--date", "day", default="2026-11-20", show_default=True, help="Session date (a trading day).")
@click.option("--start", default="12:00", show_default=True,
              help="Window start HH:MM ET (the default hour: 700 symbols trade 7.4k events/s outside the bursts, "
              "73k/s in them, 14k/s on average; the opening hour has three times that).")  # fmt: skip
@click.option("--end", default="13:00", show_default=True, help="Window end HH:MM ET (an hour by default).")
@click.option("--bursts", type=int, default=6, show_default=True, help="Burst minutes (ten times the activity).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Times real time; 0: as fast as ingest publishes.")  # fmt: skip
@click.option("--workers", default="1,2,3", show_default=True, help="The N to run, comma-separated.")
@click.option("--no-write", is_flag=True, help="Print only; do not update BENCHMARKS.md.")
@click.pass_context
def bench_scaleout(
    ctx: click.Context, n_symbols: int, day: str, start: str, end: str, bursts: int, speed: float,
    workers: str, no_write: bool,
) -> None:  # fmt: skip
    """A whole-market synthetic session through ingest, N streams workers and N sinks for each N: events/s,
    tick-to-feature latency, CPU per process and lag, the venue's drops and repairs and the inputs the
    workers did not apply (by reason), and whether every output topic is byte-identical whatever N is (the
    records without their source_commit stamp, so rows of N recorded at different commits compare) and
    every table equals its topic. The table keeps the rows of other N recorded earlier for
    the same session (in benchmarks/scaleout-results.json next to BENCHMARKS.md, committed with it, so each
    N of an hour-long session can run apart, even from another clone; with --no-write in <state
    dir>/bench-scaleout/results.json)."""

    def run() -> None:
        from benchmarks import scaleout_bench
        from benchmarks.ingest_bench import machine
        from kafkaio.errors import ConfigError
        from kafkaio.registry import SchemaRegistry
        from schemas.serde import AvroSerde

        context: Context = ctx.obj
        settings = context.settings
        try:
            ns = [int(x) for x in workers.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--workers: comma-separated numbers (got {workers!r})") from None
        if not ns or min(ns) < 1:
            raise ConfigError("--workers: at least one N of 1 or more")
        if speed < 0:
            raise ConfigError(f"--speed: 0 (as fast as ingest publishes) or more (got {speed:g})")
        shape = scaleout_bench.Shape(day, scaleout_bench.Shape.market(n_symbols), start, end, bursts, speed or None)
        work = settings.stack.state_dir / "bench-scaleout"
        results = scaleout_bench.run(
            settings.kafka,
            lambda kafka: AvroSerde(SchemaRegistry(settings.registry), kafka, context.catalog),
            context.catalog,
            settings.database.dsn,
            shape,
            ns,
            work,
            report=lambda line: click.echo(line, err=True),
        )
        # the rows of other N recorded earlier for the same session stay in the table (an hour-long session
        # paced at real time takes an hour per N)
        recorded = dt.datetime.now(dt.UTC).date().isoformat()
        kept = work / "results.json" if no_write else REPO_ROOT / "benchmarks" / "scaleout-results.json"
        rows = scaleout_bench.remember(kept, shape, results, recorded, machine())
        publish("scaleout", scaleout_bench.markdown(shape, rows), no_write)

    guarded(run)()
