"""`scalp tune`: a reviewed proposal for setup thresholds, from an exported dataset; never applied."""

from __future__ import annotations

import json
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
        import yaml

        from backtest import tune as t
        from streams.core.errors import PolicyError

        context: Context = ctx.obj
        live = policy_path or context.settings.streams.policy_file
        if (dataset is None) == (run_id is None):
            raise t.TuneError("give one of --run or --dataset")
        path = dataset if dataset is not None else out / str(run_id) / "dataset.parquet"
        if proposed.resolve() == live.resolve():
            raise t.TuneError(f"--proposed {proposed} is the live policy file; tune never writes it")
        live_text = live.read_text()
        try:
            policy = t.validate(live_text, str(live))
        except PolicyError as exc:
            raise t.TuneError(str(exc)) from None
        meta_file = path.with_name("dataset.meta.json")
        if meta_file.exists():
            made_with = json.loads(meta_file.read_text()).get("session_policy_digest")
            if made_with and made_with != policy.digest:
                raise t.TuneError(
                    f"{path} was exported from a run with policy {made_with[:12]}, the live policy is "
                    f"{policy.digest[:12]}: back-test with the live policy first"
                )
        search = t.Search(kind, samples, seed, objective, min_trades, validation_days)
        if space is not None:
            search.space = t.read_space(yaml.safe_load(space.read_text()), str(space))
        data = t.load_dataset(t.load_rows(path))
        results, train, valid = t.tune(data, policy, search)
        header = [
            f"PROPOSED by `scalp tune` from {path} ({kind} search, objective {objective}); review, then copy",
            f"what you accept into {live}. Train days: {', '.join(train)}; validation days: {', '.join(valid)}.",
        ]
        text = t.propose(live_text, results, header)
        try:
            proposal = t.validate(text, str(proposed))
        except PolicyError as exc:
            raise t.TuneError(f"the proposal is not a valid policy ({exc}); nothing written") from None
        proposed.parent.mkdir(parents=True, exist_ok=True)
        proposed.write_text(text)
        changed = t.diff(live_text, text, str(live), str(proposed))
        info = {
            "dataset": str(path),
            "rows": data.rows,
            "unlabelled": data.unlabelled,
            "idle_days": list(data.idle_days),
            "policy_file": str(live),
            "policy_digest": policy.digest,
            "proposed_file": str(proposed),
            "proposed_digest": proposal.digest,
            "search": f"{kind}" + (f" ({samples} draws, seed {seed})" if kind == "random" else ""),
            "objective": objective,
            "min_trades": min_trades,
            "diff": changed,
        }
        report = path.with_name("tune_report.md")
        report.write_text(t.report_markdown(results, train, valid, info))
        body = {**info, **t.report_json(results, train, valid)}
        path.with_name("tune.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
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
