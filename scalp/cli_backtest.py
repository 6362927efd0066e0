"""`scalp backtest` (replay, labels, export, drift and the report in one command) and `scalp report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from schemas.topics import FILLS, MARKET_QUOTES, SIGNALS

from .cli_research import replay_options, replay_with_progress
from .cliutil import guarded, range_options, runs_option, with_options
from .context import Context


def _load_extras(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    def table(name: str) -> list[dict[str, Any]]:
        file = path / name
        return list(pq.read_table(file).to_pylist()) if file.exists() else []

    drift_file = path / "drift.json"
    drift = json.loads(drift_file.read_text()) if drift_file.exists() else None
    return table("signal_labels.parquet"), drift, table("live_fills.parquet")


@click.command()
@with_options(range_options)
@with_options(replay_options("backtest"))
@click.option("--csv", "also_csv", is_flag=True, help="Also write dataset.csv.")
@runs_option
@click.pass_context
def backtest(
    ctx: click.Context,
    from_: str | None,
    to: str | None,
    source: str,
    run_id: str | None,
    overwrite: bool,
    policy_path: Path | None,
    feedback: bool,
    also_csv: bool,
    out: Path,
) -> None:
    """Back-test a date range: replay, labels, dataset export, drift against live, and an HTML report.

    One process: the market topics (or tables) of [--from, --to) are replayed through the strategy core
    and the paper broker into <out>/<run id>/ (as `scalp replay`), every signal is labelled (`scalp
    labels`), the point-in-time dataset is exported (`scalp export`), the run is compared with the live
    decisions of the range (`scalp drift`, when there are any) and <out>/<run id>/report/index.html is
    written with PNG plots: equity in R, R distribution, expectancy per setup, drift, and latency and
    slippage of the live fills in the range.
    """

    def run() -> None:
        from backtest.drift import KEYS
        from backtest.report import write_report
        from backtest.workflow import (
            drift_run,
            export_run,
            label_signals,
            label_summary,
            live_records,
            load_policy_file,
            write_labels,
        )

        context: Context = ctx.obj
        policy = load_policy_file(context.research(), policy_path)
        done = replay_with_progress(
            context, "backtest", from_, to, source, run_id, overwrite, policy_path, feedback, out
        )
        rid = done.meta["run_id"]
        click.echo(f"replay: {done.summary()}")
        signals = done.outputs.get(SIGNALS, [])
        quotes = (r for topic, r in done.market if topic == MARKET_QUOTES)
        end = done.meta["to_ns"]
        until = end if end is not None else 1 << 62  # without --to the read went to the end of the topics
        labels = label_signals(context.research(), signals, policy, rid, source, quotes, until) if signals else []
        write_labels(done.path, labels)
        click.echo(f"labels: {label_summary(labels, len(signals))}")
        exported = export_run(done.path, also_csv)
        click.echo(
            f"export: {exported.rows} rows ({exported.labelled} labelled), no feature after its signal"
            if exported
            else "export: no signals with features; no dataset"
        )
        live = live_records(context.research(), done.meta, (*KEYS, FILLS))
        drift = None
        if any(live[t] for t in KEYS):
            report = drift_run(done.path, {t: live[t] for t in KEYS}, done.outputs)
            drift = report.to_dict()
            click.echo(
                f"drift: {'none' if report.clean else 'FOUND'} ("
                + ", ".join(
                    f"{name} {t.matched} matched/{len(t.differing)} differing/{len(t.missing)} missing/"
                    f"{len(t.extra)} extra"
                    for name, t in report.topics.items()
                )
                + ")"
            )
        else:
            click.echo("drift: no live decisions in the range; nothing to compare")
        if live[FILLS]:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(live[FILLS]), done.path / "live_fills.parquet")
        page, summary = write_report(done.path, done.meta, done.outputs, labels, drift, live[FILLS])
        t = summary["trades"]
        exp = "-" if t["expectancy"] is None else f"{t['expectancy']:+.3f}"
        click.echo(
            f"backtest {rid}: {t['trades']} paper trades, {t['total_r']:+.2f} R (expectancy {exp}), "
            f"max drawdown {t['max_drawdown_r']:.2f} R; report {page}"
        )

    guarded(run)()


@click.command()
@click.option("--run", "run_id", required=True, help="The run whose report to (re)build.")
@runs_option
@click.pass_context
def report(ctx: click.Context, run_id: str, out: Path) -> None:
    """Rebuild <out>/<run>/report/index.html from the run's files (no services needed)."""

    def run() -> None:
        from backtest.replay import read_run
        from backtest.report import write_report

        path = out / run_id
        meta, outputs = read_run(path)
        labels, drift, fills = _load_extras(path)
        page, _ = write_report(path, meta, outputs, labels, drift, fills)
        click.echo(f"report: {page}")

    guarded(run)()
