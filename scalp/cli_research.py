"""Research commands: `scalp replay`, `scalp drift`, `scalp labels`."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from schemas.errors import ConfigError

from .cli_ingest import _parse_time
from .cliutil import guarded
from .context import Context

log = logging.getLogger("scalp.research")
NS = 1_000_000_000
F = TypeVar("F", bound=Callable[..., Any])
LABEL_COLUMNS = (
    "signal_id", "rule_digest", "ts", "symbol", "setup", "side", "entry_price", "outcome", "exit_ts", "exit_price",
    "r", "mfe", "mae", "run_id",
)  # fmt: skip
_TS = {"ts", "exit_ts"}
LABEL_UPSERT = (
    f"INSERT INTO signal_labels ({', '.join(LABEL_COLUMNS)}) VALUES "  # noqa: S608 - constants only
    f"({', '.join('to_timestamp(%s / 1e9)' if c in _TS else '%s' for c in LABEL_COLUMNS)}) "
    "ON CONFLICT (signal_id, rule_digest) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in LABEL_COLUMNS if c not in ("signal_id", "rule_digest"))
)

_range = [
    click.option("--from", "from_", default=None, help="Start (inclusive): YYYY-MM-DD (00:00 ET) or ISO datetime."),
    click.option("--to", default=None, help="End (exclusive); default: everything after --from."),
]
_runs = click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Directory of runs."
)


def _with(options: list[Any]) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return wrap


def _bounds(from_: str | None, to: str | None) -> tuple[int | None, int | None]:
    start = _parse_time(from_, "--from") if from_ else None
    end = _parse_time(to, "--to") if to else None
    if start is not None and end is not None and end <= start:
        raise ConfigError("--to must be after --from")
    return start, end


def _iso(ns: int | None) -> str | None:
    return None if ns is None else dt.datetime.fromtimestamp(ns / NS, dt.UTC).isoformat()


def _policy(context: Context, policy_path: Path | None) -> Any:
    from streams.core.errors import PolicyError
    from streams.core.policy import load_policy

    try:
        return load_policy(policy_path or context.settings.streams.policy_file)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


@click.command()
@_with(_range)
@click.option("--source", type=click.Choice(["kafka", "tables"]), default="kafka", show_default=True)
@click.option("--run-id", default=None, help="Name of the run (default: replay-<from>-<to>-<policy digest>).")
@click.option("--overwrite", is_flag=True, help="Replace a run of the same id.")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="Session policy file.")
@click.option(
    "--feedback/--no-feedback",
    default=True,
    show_default=True,
    help="Closed trades and refused orders reach the risk module at once (a closed loop); --no-feedback "
    "matches a live session whose router ran after the strategy.",
)
@_runs
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
    out: Path,
) -> None:
    """Replay market_trades and market_quotes through the strategy core and the paper broker.

    Reads Kafka by time (offsets_for_times) or the tables, in event-time order, and writes the run's
    features, signals, risk decisions, intents, orders, fills, ledger and account snapshots to
    <out>/<run id>/*.parquet with run.json (range, offsets, digests, source commit, output sha256s).
    Never writes to the live topics. The same inputs and policy give identical outputs.
    """

    def run() -> None:
        from backtest.replay import replay as run_replay
        from backtest.replay import run_dir, write_run
        from backtest.sources import RetentionGap, from_kafka, from_tables
        from connectors.execution.tracker import FeeSchedule
        from streams.core.digests import Digests, source_commit
        from streams.core.pipeline import CoreParts

        context: Context = ctx.obj
        settings = context.settings
        start, end = _bounds(from_, to)
        policy = _policy(context, policy_path)
        rid = run_id or "-".join(
            ["replay", (from_ or "all").replace(":", ""), (to or "end").replace(":", ""), policy.digest[:8]]
        )
        path = run_dir(out, rid, overwrite)
        if source == "kafka":
            try:
                read = from_kafka(settings.kafka, context.serde, start, end)
            except RetentionGap as exc:
                path.rmdir()
                raise ConfigError(str(exc)) from None
        else:
            from sinks.db import connect

            with connect(settings.database) as conn:
                read = from_tables(conn, start, end)
        if not read.records:
            click.echo(f"replay: no market data in {_iso(start) or 'the beginning'} .. {_iso(end) or 'the end'}")
        digests = Digests(source_commit(), policy.digest, settings.digest())
        fees = settings.execution.fees
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("replay", total=len(read.records))
            result = run_replay(
                read.records,
                CoreParts.create(policy, digests),
                settings.execution.paper,
                FeeSchedule(fees.per_share_usd, fees.per_contract_usd, fees.per_order_usd),
                progress=lambda n: progress.update(task, completed=n),
                feedback_loop=feedback,
            )
        meta = write_run(
            path,
            result,
            {
                "run_id": rid,
                "source": read.source,
                "from": _iso(start),
                "to": _iso(end),
                "from_ns": start,
                "to_ns": end,
                "offsets": {t: {str(p): list(r) for p, r in parts.items()} for t, parts in read.offsets.items()},
                "session_policy_digest": policy.digest,
                "env_hash": digests.env_hash,
                "source_commit": digests.source_commit,
                "policy_file": str(policy_path or settings.streams.policy_file),
                "feedback": feedback,
            },
        )
        counts = ", ".join(f"{t} {v['rows']}" for t, v in meta["outputs"].items() if v["rows"])
        click.echo(f"replay {rid}: {result.inputs} events -> {counts or 'no outputs'}; written to {path}")

    guarded(run)()


def _live(context: Context, meta: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    from backtest.drift import KEYS
    from backtest.sources import from_kafka

    read = from_kafka(context.settings.kafka, context.serde, meta.get("from_ns"), meta.get("to_ns"), tuple(KEYS))
    live: dict[str, list[dict[str, Any]]] = {}
    for topic, record in read.records:
        live.setdefault(topic, []).append(record)
    return live


@click.command()
@click.option("--run", "run_id", required=True, help="The replay run to compare with the live topics.")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when anything differs (for CI).")
@_runs
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

        from backtest.drift import compare
        from backtest.replay import read_run

        context: Context = ctx.obj
        path = out / run_id
        meta, outputs = read_run(path)
        report = compare(_live(context, meta), outputs)
        body = report.to_dict()
        (path / "drift.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
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
@_with(_range)
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None, help="Session policy file.")
@_runs
@click.pass_context
def labels(
    ctx: click.Context, run_id: str | None, from_: str | None, to: str | None, policy_path: Path | None, out: Path
) -> None:
    """Label every signal TP / SL / TIME from the quotes after it, into signal_labels.

    Exits at the bid for longs and the ask for shorts; stop and take-profit from the policy's risk
    levels (stop_bps, take_profit_r) and the time stop time_stop_min; the stop is checked first and a gap
    through it exits at the gap price. Rows are upserted by (signal_id, rule_digest); with --run they also
    go to <out>/<run>/signal_labels.parquet.
    """

    def run() -> None:
        from backtest.replay import read_run
        from backtest.sources import from_kafka
        from sinks.db import connect
        from sinks.migrate import migrate
        from streams.core.labels import label_all, rule_digest

        context: Context = ctx.obj
        settings = context.settings
        policy = _policy(context, policy_path)
        start, end = _bounds(from_, to)
        if run_id is not None:
            meta, outputs = read_run(out / run_id)
            signals = outputs.get("signals", [])
            start, end = meta.get("from_ns"), meta.get("to_ns")
        else:
            signals = [r for _, r in from_kafka(settings.kafka, context.serde, start, end, ("signals",)).records]
        if not signals:
            click.echo("labels: no signals in the range; nothing to label")
            return
        horizon = int(policy.risk.time_stop_min * 60 * NS) + 60 * NS
        first = min(s["ts"] for s in signals) - 60 * NS
        last = max(s["ts"] for s in signals) + horizon
        quotes_read = from_kafka(settings.kafka, context.serde, first, last, ("market_quotes",))
        rows = label_all(signals, (q for _, q in quotes_read.records), policy.risk, run_id)
        digest = rule_digest(policy.risk)
        with connect(settings.database, autocommit=True) as conn:
            migrate(conn)
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(LABEL_UPSERT, [tuple(r[c] for c in LABEL_COLUMNS) for r in rows])
        if run_id is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), out / run_id / "signal_labels.parquet")
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        mean_r = sum(r["r"] for r in rows) / len(rows) if rows else 0.0
        click.echo(
            f"labels: {len(rows)} of {len(signals)} signals labelled (rule {digest}): "
            f"{dict(sorted(outcomes.items()))}, mean R {mean_r:+.3f}"
        )

    guarded(run)()


@click.command()
@click.option("--run", "run_id", required=True, help="The replay run to export (labels: `scalp labels --run` first).")
@click.option("--csv", "also_csv", is_flag=True, help="Also write dataset.csv.")
@_runs
@click.pass_context
def export(ctx: click.Context, run_id: str, also_csv: bool, out: Path) -> None:
    """Export a point-in-time dataset: each signal, the features as of its time (no look-ahead), its label.

    Writes <out>/<run>/dataset.parquet (and dataset.csv with --csv) and dataset.meta.json: the run's
    source range and offsets, config digests, source commit, row counts and the look-ahead check.
    """

    def run() -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        from backtest.export import point_in_time
        from backtest.replay import read_run

        path = out / run_id
        meta, outputs = read_run(path)
        labels_file = path / "signal_labels.parquet"
        labels = pq.read_table(labels_file).to_pylist() if labels_file.exists() else []
        rows, check = point_in_time(outputs.get("signals", []), outputs.get("features", []), labels)
        if not rows:
            click.echo(f"export: run {run_id} has no signals with features; nothing to export")
            return
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, path / "dataset.parquet")
        if also_csv:
            pacsv.write_csv(table, path / "dataset.csv")
        keys = ("run_id", "source", "from", "to", "offsets", "session_policy_digest", "env_hash", "source_commit")
        sidecar = {
            **{k: meta.get(k) for k in keys},
            "labels": "signal_labels.parquet" if labels else None,
            "columns": table.column_names,
            **check,
        }
        (path / "dataset.meta.json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
        click.echo(
            f"export: {check['rows']} rows ({check['labelled']} labelled) to {path / 'dataset.parquet'}"
            f"{' and dataset.csv' if also_csv else ''}; no feature after its signal"
        )

    guarded(run)()
