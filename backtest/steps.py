"""What `scalp backtest` does after the replay (labels, realized labels, export, drift, live fills, the report),
and `scalp report`'s rebuild of a run's report from its files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.topics import FILLS, MARKET_QUOTES, SIGNALS, TRADE_LEDGER

from .workflow import (
    ReplayDone,
    Research,
    drift_run,
    export_run,
    label_signals,
    label_summary,
    live_records,
    write_labels,
)


def backtest_steps(
    env: Research, done: ReplayDone, policy: Any, source: str, also_csv: bool, say: Callable[[str], None]
) -> tuple[Path, dict[str, Any]]:
    """Labels, realized labels, export, drift against the live decisions, the live fills, and the report;
    each step's result is told through ``say``. Returns the report page and summary."""
    from .drift import KEYS
    from .realized import compare, realized_rows
    from .report import write_report

    rid = done.meta["run_id"]
    signals = done.outputs.get(SIGNALS, [])
    if done.meta.get("ticks", True):
        quotes = (r for topic, r in done.market if topic == MARKET_QUOTES)
        end = done.meta["to_ns"]
        until = end if end is not None else 1 << 62  # without --to the read went to the end of the topics
        labels = label_signals(env, signals, policy, rid, source, quotes, until) if signals else []
    else:  # replayed from features: the quotes, wherever they still are
        labels = label_signals(env, signals, policy, rid, "auto") if signals else []
        if signals and not labels:
            say("labels: no quotes in the range (the ticks are gone): simulated labels need ticks")
    write_labels(done.path, labels)
    say(f"labels: {label_summary(labels, len(signals))}")
    live = live_records(env, done.meta, (*KEYS, FILLS, TRADE_LEDGER))
    realized = realized_rows([*live[SIGNALS], *signals], labels, live[TRADE_LEDGER])
    write_labels(done.path, realized, "realized.parquet")
    gap = compare(realized)["all"]
    say(
        f"realized: {gap['traded']} signals traded live, {gap['labelled']} with a simulated label; mean R "
        f"simulated {_r(gap['sim_mean_r'])}, realized {_r(gap['realized_mean_r'])}"
        if realized
        else "realized: no live trades in the range"
    )
    exported = export_run(done.path, also_csv)
    say(
        f"export: {exported.rows} rows ({exported.labelled} labelled), no feature after its signal"
        if exported
        else "export: no signals with features; no dataset"
    )
    drift = None
    if any(live[t] for t in KEYS):
        report = drift_run(done.path, {t: live[t] for t in KEYS}, done.outputs)
        drift = report.to_dict()
        say(
            f"drift: {'none' if report.clean else 'FOUND'} ("
            + ", ".join(
                f"{name} {t.matched} matched/{len(t.differing)} differing/{len(t.missing)} missing/{len(t.extra)} extra"
                for name, t in report.topics.items()
            )
            + ")"
        )
    else:
        say("drift: no live decisions in the range; nothing to compare")
    if live[FILLS]:
        import pyarrow.parquet as pq

        from schemas.arrow import arrow_schema, to_table
        from schemas.catalog import catalog

        schema = arrow_schema(catalog()[FILLS].schema)
        pq.write_table(to_table(live[FILLS], schema), done.path / "live_fills.parquet")
    return write_report(done.path, done.meta, done.outputs, labels, drift, live[FILLS], realized)


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def rebuild_report(path: Path) -> Path:
    """The report of the run at ``path`` again, from its files (no services needed)."""
    import pyarrow.parquet as pq

    from schemas.arrow import to_records

    from .replay import read_run
    from .report import write_report

    def table(name: str) -> list[dict[str, Any]]:
        file = path / name
        return to_records(pq.read_table(file)) if file.exists() else []

    meta, outputs = read_run(path)
    drift_file = path / "drift.json"
    drift = json.loads(drift_file.read_text()) if drift_file.exists() else None
    page, _ = write_report(
        path,
        meta,
        outputs,
        table("signal_labels.parquet"),
        drift,
        table("live_fills.parquet"),
        table("realized.parquet"),
    )
    return page
