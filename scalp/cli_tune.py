"""`scalp tune`: a reviewed proposal for setup thresholds, from an exported dataset; never applied."""

from __future__ import annotations

from pathlib import Path

import click

from .cliutil import guarded
from .context import Context

PROPOSED = Path("config/session_policies.proposed.yaml")


@click.command()
@click.option("--run", "run_id", default=None, help="Tune on <out>/<run>/dataset.parquet (from `scalp export`).")
@click.option("--dataset", type=click.Path(path_type=Path), default=None, help="Or a dataset.parquet file.")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="The live policy file.")
@click.option(
    "--proposed",
    type=click.Path(path_type=Path),
    default=PROPOSED,
    show_default=True,
    help="Where the proposal goes (never the live policy file).",
)
@click.option("--search", "kind", type=click.Choice(["grid", "random"]), default="grid", show_default=True)
@click.option("--samples", type=click.IntRange(1, 1_000_000), default=200, show_default=True, help="Random draws.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random search.")
@click.option("--objective", type=click.Choice(["total_r", "expectancy"]), default="total_r", show_default=True)
@click.option("--min-trades", type=click.IntRange(1), default=5, show_default=True, help="On the training days.")
@click.option("--validation-days", type=click.IntRange(1), default=None, help="Last N days (default: a third).")
@click.option("--space", type=click.Path(path_type=Path), default=None, help="YAML {param: [values]} for the grid.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Runs.")
@click.pass_context
def tune(
    ctx: click.Context,
    run_id: str | None,
    dataset: Path | None,
    policy_path: Path | None,
    proposed: Path,
    kind: str,
    samples: int,
    seed: int,
    objective: str,
    min_trades: int,
    validation_days: int | None,
    space: Path | None,
    out: Path,
) -> None:
    """Search promote_score, min_rvol, max_spread_bps and imbalance_min per setup on an exported dataset.

    The days are split in time order (training first, validation last); a setup's best values on the
    training days are proposed only if they also beat the current values on the validation days. Writes
    the proposal (the live policy with those values, comments kept) to --proposed, and tune_report.md and
    tune.json next to the dataset: trades, trades per day, win rate, expectancy and total R before and
    after, per setup and split, and the policy diff. The live policy file is never modified.
    """

    def run() -> None:
        from backtest.tune import Search, TuneError
        from backtest.tuning import run_tuning

        context: Context = ctx.obj
        live = policy_path or context.settings.streams.policy_file
        if (dataset is None) == (run_id is None):
            raise TuneError("give one of --run or --dataset")
        path = dataset if dataset is not None else out / str(run_id) / "dataset.parquet"
        search = Search(kind, samples, seed, objective, min_trades, validation_days)
        tuned = run_tuning(path, live, proposed, search, space)
        results, report = tuned.results, tuned.report
        for r in results:
            moves = ", ".join(f"{k} {r.current[k]:g}->{v:g}" for k, v in r.changes().items())
            v0, v1 = r.validation_before, r.validation_after
            click.echo(
                f"tune {r.setup}: {r.decision}{' (' + moves + ')' if moves else ''}; validation: current "
                f"{v0.trades} trades {v0.total_r:+.2f}R, best on train {v1.trades} trades {v1.total_r:+.2f}R"
            )
        count = sum(1 for r in results if r.proposed)
        click.echo(
            f"tune: {count} of {len(results)} setups changed in {proposed} (live policy {live} untouched); "
            f"report {report}"
        )

    guarded(run)()
