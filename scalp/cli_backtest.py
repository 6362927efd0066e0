"""`scalp backtest` (replay, labels, export, drift and the report in one command) and `scalp report`."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_research import replay_options, replay_with_progress
from .cliutil import guarded, range_options, runs_option, with_options
from .context import Context


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

    One process: the market topics (or tables, or archive) of [--from, --to) are replayed through the
    strategy core and the paper broker into <out>/<run id>/ (as `scalp replay`; --source features re-runs
    setups and risk from the stored feature snapshots), every signal is labelled (`scalp labels`), the
    signals that traded live get their realized outcome next to the label (realized.parquet), the
    point-in-time dataset is exported (`scalp export`), the run is compared with the live decisions of the
    range (`scalp drift`, when there are any) and <out>/<run id>/report/index.html is written with PNG plots:
    a chart per day and symbol (and an interactive page), equity in R, R distribution, expectancy per setup,
    simulated vs realized R, drift, and latency and slippage of the live fills in the range.
    """

    def run() -> None:
        from backtest.steps import backtest_steps
        from backtest.workflow import load_policy_file

        context: Context = ctx.obj
        policy = load_policy_file(context.research(), policy_path)
        done = replay_with_progress(
            context, "backtest", from_, to, source, run_id, overwrite, policy_path, feedback, out
        )
        click.echo(f"replay: {done.summary()}")
        page, summary = backtest_steps(context.research(), done, policy, source, also_csv, click.echo)
        t = summary["trades"]
        exp = "-" if t["expectancy"] is None else f"{t['expectancy']:+.3f}"
        click.echo(
            f"backtest {done.meta['run_id']}: {t['trades']} paper trades, {t['total_r']:+.2f} R (expectancy {exp}), "
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
        from backtest.steps import rebuild_report

        click.echo(f"report: {rebuild_report(out / run_id)}")

    guarded(run)()
