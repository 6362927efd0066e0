"""`scalp ingest polygon | synthetic` and `scalp backfill`."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import sys
from typing import Any

import click
from pydantic import SecretStr

from connectors.polygon.settings import PolygonSettings
from kafkaio.errors import ConfigError
from schemas.topics import BARS_1M, MARKET_QUOTES, MARKET_TRADES

from .cliutil import guarded, metrics_port_option, parse_time
from .context import Context

log = logging.getLogger("scalp.ingest")


def _symbols(value: str) -> list[str]:
    symbols = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not symbols:
        raise click.BadParameter("at least one symbol")
    for symbol in symbols:
        if not symbol.replace(".", "").isalnum():
            raise click.BadParameter(f"not a ticker: {symbol!r}")
    return symbols


def _run_pipeline(
    context: Context,
    polygon: PolygonSettings,
    symbols: list[str],
    options: bool,
    simulated: bool,
    window: tuple[int, int] | None = None,
) -> dict[str, Any]:
    from connectors.polygon.run import run_ingest

    settings = context.settings
    stats = run_ingest(
        settings.kafka,
        context.serde,
        context.catalog,
        polygon,
        symbols,
        options=options,
        simulated=simulated,
        window=window,
    )
    return {
        "events": stats.events,
        "published": stats.published,
        "duplicates_dropped": stats.duplicates,
        "dead_letters": stats.dead_letters,
        "gaps": stats.gaps,
        "unrepaired": stats.unrepaired,
        "recovered": stats.repaired,
        "options_rows": stats.options,
        "connections": stats.connections,
        "ignored": stats.ignored,
    }


def _summary(result: dict[str, Any]) -> None:
    published = result["published"]
    click.echo(
        f"ingest: {result['events']} events; published trades={published[MARKET_TRADES]} "
        f"quotes={published[MARKET_QUOTES]} bars={published[BARS_1M]} options={result['options_rows']}; "
        f"{result['duplicates_dropped']} duplicates dropped, {result['dead_letters']} dead letters, "
        f"{result['gaps']} gaps ({result['unrepaired']} unrepaired, {result['recovered']} events recovered), "
        f"{result['connections']} connections"
    )


@click.group()
def ingest() -> None:
    """Market data into Kafka (Polygon/Massive live, or a synthetic session)."""


@ingest.command("polygon")
@metrics_port_option("polygon", 9467)
@click.option("--symbols", default="SPY,QQQ", show_default=True, help="Comma-separated tickers.")
@click.option("--options", "with_options", is_flag=True, help="Also poll options chain snapshots.")
@click.pass_context
def ingest_polygon(ctx: click.Context, symbols: str, with_options: bool) -> None:
    """Stream T, Q and AM for the symbols (POLYGON_WS_URL), repair gaps from REST (POLYGON_REST_URL).

    Runs until SIGTERM/SIGINT, which drain the queue and flush the producer. Reconnects forever.
    """

    def run() -> None:
        context: Context = ctx.obj
        result = _run_pipeline(context, context.settings.polygon, _symbols(symbols), with_options, simulated=False)
        _summary(result)

    guarded(run)()


@ingest.command("synthetic")
@metrics_port_option("polygon", 9467)
@click.option("--date", "day", required=True, help="Session date (YYYY-MM-DD); must be an NYSE trading day.")
@click.option("--symbols", default="SPY,QQQ", show_default=True)
@click.option("--speed", type=float, default=None, help="Times real time (e.g. 60 = a minute per second).")
@click.option("--max", "as_fast", is_flag=True, help="As fast as the pipeline takes it (the default).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start", default=None, help="Window start HH:MM US/Eastern (default 04:00).")
@click.option("--end", default=None, help="Window end HH:MM US/Eastern (default the end of extended hours).")
@click.option("--options", "with_options", is_flag=True, help="Also poll options chain snapshots.")
@click.option(
    "--bursts",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Minutes of the window (seeded, in regular hours first) with ten times the market's activity.",
)
@click.pass_context
def ingest_synthetic(
    ctx: click.Context,
    day: str,
    symbols: str,
    speed: float | None,
    as_fast: bool,
    seed: int,
    start: str | None,
    end: str | None,
    with_options: bool,
    bursts: int,
) -> None:
    """A deterministic synthetic session, served by a local Polygon-protocol server (separate process)
    and ingested through the same path as `ingest polygon`. The same seed gives identical topics.
    A day older than the topics keep is refused unless SCALP_MIN_RETENTION_MS keeps it."""

    def run() -> None:
        from connectors.synthetic.generator import session_times
        from connectors.synthetic.runner import synthetic_server

        try:
            session_date = dt.date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"--date: not a date: {day!r}") from None
        if speed is not None and as_fast:
            raise ConfigError("--speed and --max are exclusive")
        if speed is not None and speed <= 0:
            raise ConfigError("--speed must be positive")
        times = session_times(session_date, start, end)  # validates the day and the window before starting
        tickers = _symbols(symbols)
        key = secrets.token_hex(16)
        args = [
            "--date",
            session_date.isoformat(),
            "--symbols",
            ",".join(tickers),
            "--seed",
            str(seed),
            "--api-key",
            key,
        ]
        for flag, value in (("--start", start), ("--end", end), ("--speed", speed), ("--bursts", bursts or None)):
            if value is not None:
                args += [flag, str(value)]
        context: Context = ctx.obj
        with synthetic_server(args) as server:
            polygon = context.settings.polygon.model_copy(
                update={
                    "api_key": SecretStr(key),
                    "ws_url": server.ws_url,
                    "rest_url": server.rest_url,
                    "warm_start_events": 0,
                    "trade_gap_s": 0,
                    "quote_gap_s": 0,
                    # every key of the window is remembered: a re-run (or the rest of an interrupted run)
                    # publishes only what Kafka does not hold yet
                    "dedupe_window_s": max(
                        context.settings.polygon.dedupe_window_s, (times.end_ns - times.start_ns) / 1e9 + 60
                    ),
                }
            )
            click.echo(f"synthetic session {session_date} {','.join(tickers)} seed {seed} at {server.ws_url}", err=True)
            window = (times.start_ns, times.end_ns)
            result = _run_pipeline(context, polygon, tickers, with_options, simulated=True, window=window)
        _summary(result)

    guarded(run)()


@click.command()
@click.option("--symbols", required=True, help="Comma-separated tickers.")
@click.option("--from", "from_", required=True, help="Start (inclusive): YYYY-MM-DD (00:00 ET) or ISO datetime.")
@click.option("--to", "to", required=True, help="End (exclusive): YYYY-MM-DD (00:00 ET) or ISO datetime.")
@click.option("--kinds", default="trades,quotes,bars", show_default=True)
@click.pass_context
def backfill(ctx: click.Context, symbols: str, from_: str, to: str, kinds: str) -> None:
    """REST history (POLYGON_REST_URL) into the same topics. Resumable: re-running a window publishes
    nothing twice (keys already in Kafka are skipped). A window older than the topics keep is refused
    (Kafka deletes by venue time) unless SCALP_MIN_RETENTION_MS keeps it."""

    def run() -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from connectors.polygon.backfill import TOPICS, Backfill

        from_ns, to_ns = parse_time(from_, "--from"), parse_time(to, "--to")
        if to_ns <= from_ns:
            raise ConfigError("--to must be after --from")
        wanted = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = [k for k in wanted if k not in TOPICS]
        if unknown or not wanted:
            raise ConfigError(f"--kinds: unknown {unknown}; choose from trades, quotes, bars")
        context: Context = ctx.obj
        settings = context.settings
        job = Backfill.open(settings.kafka, context.serde, context.catalog, settings.polygon, wanted, from_ns)
        tickers = _symbols(symbols)
        span = to_ns - from_ns
        results = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeElapsedColumn(),
            disable=not sys.stderr.isatty(),
        ) as progress:
            for symbol in tickers:
                for kind in wanted:
                    task = progress.add_task(f"{symbol} {kind}", total=span, rows=0)

                    def report(_s: str, _k: str, ts: int, rows: int, task: Any = task) -> None:
                        progress.update(task, completed=min(span, ts - from_ns), rows=rows)

                    results.append(job.run_one(symbol, kind, from_ns, to_ns, report))
        for r in results:
            click.echo(
                f"backfill {r.symbol} {r.kind}: {r.fetched} fetched, {r.published} published, "
                f"{r.already_present} already in Kafka"
            )

    guarded(run)()
