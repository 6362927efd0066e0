"""Research commands: `scalp replay`, `scalp drift`, `scalp labels`, `scalp export` (steps in research.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from backtest.sources import SOURCES
from backtest.workflow import iso
from kafkaio.errors import ConfigError

from .cliutil import guarded, parse_time, range_options, runs_option, with_options
from .context import Context

log = logging.getLogger("scalp.research")
# (topic -> partition -> first and last offset, inclusive; the window's from_ns and to_ns)
Offsets = tuple[dict[str, dict[int, tuple[int, int]]], int | None, int | None]


def _archive_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    """--archive-dir: the settings' archive directory for this command."""
    if value is not None:
        settings = ctx.obj.settings
        database = settings.database.model_copy(update={"archive_dir": value})
        ctx.obj.settings = settings.model_copy(update={"database": database})


def replay_options(name: str) -> list[Any]:
    """--source, --archive-dir, --run-id, --overwrite, --policy, --feedback: shared by `scalp replay` and
    `scalp backtest`."""
    return [
        click.option(
            "--source",
            type=click.Choice(SOURCES),
            default="auto",
            show_default=True,
            help="auto: each day from Kafka if it still holds it, else the tables, else the archive (the source "
            "of every day is in run.json). features: setups and risk from the stored feature snapshots (each day "
            "from wherever they are), no ticks: no paper broker.",
        ),
        click.option(
            "--archive-dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            expose_value=False,
            callback=_archive_dir,
            help="The Parquet archive `scalp db maintain --archive-dir` writes (default: $SCALP_ARCHIVE_DIR).",
        ),
        click.option("--run-id", default=None, help=f"Name of the run (default: {name}-<from>-<to>-<policy digest>)."),
        click.option("--overwrite", is_flag=True, help="Replace a run of the same id."),
        click.option(
            "--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="Session policy file."
        ),
        click.option(
            "--feedback/--no-feedback",
            default=True,
            show_default=True,
            help="Closed trades and refused orders reach the risk module at once (a closed loop); --no-feedback "
            "matches a live session whose router ran after the strategy (for drift).",
        ),
    ]


def replay_with_progress(
    context: Context,
    kind: str,
    from_: str | None,
    to: str | None,
    source: str,
    run_id: str | None,
    overwrite: bool,
    policy_path: Path | None,
    feedback: bool,
    out: Path,
    offsets: Offsets | None = None,
    research: Any = None,
    *,
    quiet: bool = False,
) -> Any:
    """The replay step of `scalp replay` and `scalp backtest`: the run id (default
    ``<kind>-<from>-<to>-<policy digest>``), progress bars for the read and the replay, and the line saying
    a range held no market data. ``research``: instead of the context's (a re-run from digests). ``quiet``: no
    progress bars and no line (the Python API). Returns :class:`backtest.workflow.ReplayDone`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from backtest.workflow import load_policy_file, run_replay

    start, end = _bounds(from_, to)
    if offsets is not None:  # the recorded window, unless --from/--to narrow it
        start = start if start is not None else offsets[1]
        end = end if end is not None else offsets[2]
    research = research or context.research()
    policy = load_policy_file(research, policy_path)
    rid = run_id or "-".join(
        [kind, (from_ or "all").replace(":", ""), (to or "end").replace(":", ""), policy.digest[:8]]
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=quiet) as progress:
        read_task = progress.add_task("read market data", total=None)
        replay_task = progress.add_task("replay", total=None, visible=False)

        def replayed(n: int, total: int) -> None:
            progress.update(read_task, visible=False)
            progress.update(replay_task, completed=n, total=total, visible=True)

        done = run_replay(
            research,
            start=start,
            end=end,
            source=source,
            run_id=rid,
            overwrite=overwrite,
            policy_path=policy_path,
            feedback=feedback,
            out=out,
            read_progress=lambda n: progress.update(read_task, completed=n),
            replay_progress=replayed,
            offsets=offsets[0] if offsets is not None else None,
        )
    if not done.market and not quiet:
        click.echo(f"{kind}: no market data in {iso(start) or 'the beginning'} .. {iso(end) or 'the end'}")
    return done


def _bounds(from_: str | None, to: str | None) -> tuple[int | None, int | None]:
    start = parse_time(from_, "--from") if from_ else None
    end = parse_time(to, "--to") if to else None
    if start is not None and end is not None and end <= start:
        raise ConfigError("--to must be after --from")
    return start, end


def offset_ranges(out: Path, offsets_from: str | None, spec: str | None) -> Offsets | None:
    """--offsets-from RUN (the ranges and the time window in that run's run.json) or --offsets
    ``topic:partition:first-last,...`` (inclusive offsets) as (ranges, from_ns, to_ns)."""
    if offsets_from and spec:
        raise ConfigError("--offsets-from and --offsets: give one")
    if offsets_from:
        meta_file = out / offsets_from / "run.json"
        if not meta_file.exists():
            raise ConfigError(f"--offsets-from: no run {offsets_from!r} at {out} (run.json missing)")
        meta = json.loads(meta_file.read_text())
        recorded = meta.get("offsets") or {}
        if not recorded:
            raise ConfigError(
                f"--offsets-from: run {offsets_from!r} recorded no Kafka offsets (source {meta.get('source')})"
            )
        kept = {t: {int(p): (int(r[0]), int(r[1])) for p, r in parts.items()} for t, parts in recorded.items()}
        return kept, meta.get("from_ns"), meta.get("to_ns")
    if spec:
        ranges: dict[str, dict[int, tuple[int, int]]] = {}
        for item in spec.split(","):
            try:
                topic, partition, span = item.strip().split(":")
                first, last = span.split("-")
                ranges.setdefault(topic, {})[int(partition)] = (int(first), int(last))
            except ValueError:
                raise ConfigError(f"--offsets: {item!r} is not topic:partition:first-last") from None
        return ranges, None, None
    return None


@click.command()
@with_options(range_options)
@with_options(replay_options("replay"))
@click.option("--offsets-from", default=None, metavar="RUN",
              help="Replay exactly the topic/partition/offset ranges (and time window) run RUN recorded.")  # fmt: skip
@click.option("--offsets", "offsets_spec", default=None, metavar="T:P:FIRST-LAST,...",
              help="Replay exactly these market-topic offsets (inclusive): market_trades:0:0-999,...")  # fmt: skip
@click.option("--config-from", default=None, metavar="RUN",
              help="Run with the policy and settings of run RUN (from its digests; not with --policy).")  # fmt: skip
@runs_option
@click.pass_context
def replay(
    ctx: click.Context,
    from_: str | None,
    to: str | None,
    source: str,
    run_id: str | None,
    overwrite: bool,
    policy_path: Path | None,
    feedback: bool,
    offsets_from: str | None,
    offsets_spec: str | None,
    config_from: str | None,
    out: Path,
) -> None:
    """Replay market_trades and market_quotes through the strategy core and the paper broker.

    Reads each day from Kafka (by time, offsets_for_times) while it holds it, else from the tables, else from
    the Parquet archive (--source to choose one; --source features re-runs setups and risk from the
    stored feature snapshots instead), in event-time order, and writes the run's
    features, signals, risk decisions, intents, orders, fills, ledger and account snapshots to
    <out>/<run id>/*.parquet with run.json (range, offsets, digests, source commit, output sha256s) and
    configs.json (the policy and settings behind its digests). Never writes to the live topics. The same
    inputs and policy give identical outputs: --offsets-from RUN --config-from RUN re-runs RUN exactly.
    """

    def run() -> None:
        offsets = offset_ranges(out, offsets_from, offsets_spec)
        if offsets is not None and source not in ("auto", "kafka"):
            raise ConfigError(f"--offsets-from/--offsets read Kafka; --source {source} does not")
        research = None
        policy_path_: Path | None = policy_path
        if config_from:
            from backtest.configs import rerun_research

            if policy_path is not None:
                raise ConfigError("--config-from and --policy: give one")
            research, policy_path_ = rerun_research(ctx.obj.research(), out, config_from)
        done = replay_with_progress(
            ctx.obj, "replay", from_, to, source, run_id, overwrite, policy_path_, feedback, out, offsets, research
        )
        click.echo(f"replay {done.meta['run_id']}: {done.summary()}; written to {done.path}")

    guarded(run)()


@click.command()
@click.option("--run", "run_id", required=True, help="The replay run to compare with the live topics.")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when anything differs (for CI).")
@runs_option
@click.pass_context
def drift(ctx: click.Context, run_id: str, fail_on_drift: bool, out: Path) -> None:
    """Compare a replay with the live features, signals, risk decisions and orders, record by record.

    Prints matched / differing / missing (live only) / extra (replay only) per topic, the first
    differing field of each differing record, and a per-setup table of signals; writes drift.json
    into the run directory.
    """

    def run() -> None:
        from rich.console import Console
        from rich.table import Table

        from backtest.drift import KEYS
        from backtest.replay import read_run
        from backtest.workflow import drift_run, live_records

        context: Context = ctx.obj
        path = out / run_id
        meta, outputs = read_run(path)
        report = drift_run(path, live_records(context.research(), meta, tuple(KEYS)), outputs)
        console = Console(width=120)
        table = Table(title=f"drift: live vs run {run_id}")
        for col in ("topic", "matched", "differing", "missing", "extra", "first difference"):
            table.add_column(col)
        for name, t in report.topics.items():
            first = t.differing[0] if t.differing else None
            note = (
                f"{first['key']} {first['field']}: live {first['live']!r} replay {first['replay']!r}" if first else ""
            )
            table.add_row(name, str(t.matched), str(len(t.differing)), str(len(t.missing)), str(len(t.extra)), note)
        console.print(table)
        setups = Table(title="signals per setup")
        for col in ("setup", "matched", "differing", "missing", "extra"):
            setups.add_column(col)
        for setup, c in sorted(report.per_setup.items()):
            setups.add_row(setup, *(str(c.get(k, 0)) for k in ("matched", "differing", "missing", "extra")))
        console.print(setups)
        for name, sides in report.stamps.items():
            if sides["live"] != sides["replay"]:
                click.echo(
                    f"{name}: live {', '.join(sides['live']) or '-'} / replay {', '.join(sides['replay']) or '-'}"
                )
        click.echo(f"drift: {'none' if report.clean else 'FOUND'}; details in {path / 'drift.json'}")
        if fail_on_drift and not report.clean:
            raise SystemExit(1)

    guarded(run)()


@click.command()
@click.option("--run", "run_id", default=None, help="Label the signals of this replay run (default: live signals).")
@click.option("--tp-ticks", type=click.IntRange(1), default=None, help="Take-profit in ticks (with --sl-ticks).")
@click.option("--sl-ticks", type=click.IntRange(1), default=None, help="Stop in ticks (with --tp-ticks).")
@click.option("--tick-size", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True)
@with_options(range_options)
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="Session policy file.")
@runs_option
@click.pass_context
def labels(
    ctx: click.Context,
    run_id: str | None,
    tp_ticks: int | None,
    sl_ticks: int | None,
    tick_size: float,
    from_: str | None,
    to: str | None,
    policy_path: Path | None,
    out: Path,
) -> None:
    """Label every signal TP / SL / TIME from the quotes after it, into signal_labels.

    Exits at the bid for longs and the ask for shorts; stop and take-profit from the policy's risk
    levels (stop_bps, take_profit_r), or --tp-ticks/--sl-ticks from the entry, and the time stop
    time_stop_min; the stop is checked first and a gap through it exits at the gap price. Rows are
    upserted by (signal_id, rule_digest); with --run they also go to <out>/<run>/signal_labels.parquet.
    """

    def run() -> None:
        from backtest.workflow import label_signals, label_summary, load_policy_file, signals_to_label, write_labels
        from streams.core.labels import TickRule

        if (tp_ticks is None) != (sl_ticks is None):
            raise ConfigError("give both --tp-ticks and --sl-ticks, or neither (the policy's R levels)")
        ticks = TickRule(tp_ticks, sl_ticks, tick_size) if tp_ticks is not None and sl_ticks is not None else None
        context: Context = ctx.obj
        policy = load_policy_file(context.research(), policy_path)
        start, end = _bounds(from_, to)
        run_path = out / run_id if run_id is not None else None
        signals, source = signals_to_label(context.research(), run_path, start, end)
        if not signals:
            click.echo("labels: no signals in the range; nothing to label")
            return
        rows = label_signals(context.research(), signals, policy, run_id, source, ticks=ticks)
        if run_id is not None:
            write_labels(out / run_id, rows)
        click.echo(f"labels: {label_summary(rows, len(signals))}")

    guarded(run)()


@click.command()
@click.option("--run", "run_id", default=None, help="The replay run to export (labels: `scalp labels --run` first).")
@with_options(range_options)
@click.option("--name", default=None, help="Live export: directory under --out (default: live-<from>-<to>).")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), help="Live export: label levels from it.")
@click.option("--csv", "also_csv", is_flag=True, help="Also write dataset.csv.")
@runs_option
@click.pass_context
def export(
    ctx: click.Context,
    run_id: str | None,
    from_: str | None,
    to: str | None,
    name: str | None,
    policy_path: Path | None,
    also_csv: bool,
    out: Path,
) -> None:
    """Export a point-in-time dataset: each signal, the features as of its time (no look-ahead), its label.

    With --run: the run's signals, features and labels, into <out>/<run>/. Without: the live signals and
    features topics of [--from, --to), labelled now (into signal_labels too), into <out>/<name>/. Writes
    dataset.parquet (and dataset.csv with --csv) and dataset.meta.json: the source range and offsets,
    config digests, source commit(s), row counts and the look-ahead check.
    """

    def run() -> None:
        from backtest.workflow import export_live, export_run, load_policy_file

        context: Context = ctx.obj
        if run_id is not None:
            if from_ or to:
                raise ConfigError("--run exports a run's own range; --from/--to are for a live export")
            path = out / run_id
            done = export_run(path, also_csv)
        else:
            start, end = _bounds(from_, to)
            if start is None:
                raise ConfigError("give --run R, or --from (and --to) for a live export")
            path = out / (name or "-".join(["live", str(from_).replace(":", ""), (to or "end").replace(":", "")]))
            done = export_live(
                context.research(), start, end, load_policy_file(context.research(), policy_path), path, also_csv
            )
        if done is None:
            click.echo(
                f"export: no signals with features in {'run ' + run_id if run_id else 'the range'}; nothing written"
            )
            return
        click.echo(
            f"export: {done.rows} rows ({done.labelled} labelled) to {path / 'dataset.parquet'}"
            f"{' and dataset.csv' if also_csv else ''}; no feature after its signal"
        )

    guarded(run)()
