"""The research workflow behind `scalp replay / labels / export / drift / backtest`, as plain functions.

Each takes a :class:`Research` (what the steps need of the settings, and the serde) and returns what it
made; the commands print. `scalp backtest` runs them in a row in one process and keeps the market records
in memory between steps.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execution.settings import FeeSettings, PaperSettings
from kafkaio.errors import ConfigError
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import FEATURES, MARKET_QUOTES, SIGNALS, TRADE_LEDGER
from sinks.settings import DatabaseSettings

from .sources import FROM_FEATURES

NS = 1_000_000_000
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Research:
    """What the research steps need: where the data is, the serde, and the settings a replay runs with."""

    kafka: KafkaSettings
    database: DatabaseSettings  # reads (the analyst's role)
    labels_database: DatabaseSettings  # label writes (the writer's role)
    serde: AvroSerde
    policy_file: Path
    conditions_file: Path
    paper: PaperSettings
    fees: FeeSettings
    settings_digest: str
    archive_dir: Path | None = None  # the Parquet archive `scalp db maintain --archive-dir` writes
    settings_snapshot: str = ""  # the canonical settings JSON whose sha256 is settings_digest


def iso(ns: int | None) -> str | None:
    return None if ns is None else dt.datetime.fromtimestamp(ns / NS, dt.UTC).isoformat()


def load_policy_file(env: Research, policy_path: Path | None) -> Any:
    from streams.core.errors import PolicyError
    from streams.core.policy import load_policy

    try:
        return load_policy(policy_path or env.policy_file)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None


def read_market(
    env: Research,
    source: str,
    start: int | None,
    end: int | None,
    topics: tuple[str, ...] | None = None,
    progress: Progress | None = None,
) -> Any:
    """A :class:`backtest.sources.Read` of the market topics (or ``topics``) from Kafka, the tables, the
    archive, or each day from the first of those that holds it (``auto``: backtest/days.py)."""
    from sinks.db import connect

    from .days import read_auto
    from .sources import MARKET, ArchiveMissing, RetentionGap, from_archive, from_kafka, from_tables

    wanted = topics or MARKET
    try:
        if source == "kafka":
            return from_kafka(env.kafka, env.serde, start, end, wanted, progress)
        if source == "archive":
            if env.archive_dir is None:
                raise ConfigError("--source archive needs the archive's directory (--archive-dir or SCALP_ARCHIVE_DIR)")
            return from_archive(env.archive_dir, start, end, wanted)
        if source == "auto":
            return read_auto(
                env.kafka, env.serde, lambda: connect(env.database), env.archive_dir, start, end, wanted, progress
            )
    except (RetentionGap, ArchiveMissing) as exc:
        raise ConfigError(str(exc)) from None
    with connect(env.database) as conn:
        return from_tables(conn, start, end, wanted)


def read_offsets(
    env: Research,
    offsets: dict[str, dict[int, tuple[int, int]]],
    start: int | None,
    end: int | None,
    progress: Progress | None = None,
) -> Any:
    from .sources import OffsetsError, RetentionGap, from_offsets

    try:
        return from_offsets(env.kafka, env.serde, offsets, start, end, progress)
    except (OffsetsError, RetentionGap) as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class ReplayDone:
    path: Path
    meta: dict[str, Any]
    outputs: dict[str, list[dict[str, Any]]]
    market: list[tuple[str, dict[str, Any]]]  # the records replayed, in replay order

    def summary(self) -> str:
        counts = ", ".join(f"{t} {v['rows']}" for t, v in self.meta["outputs"].items() if v["rows"])
        return f"{self.meta['inputs']} events -> {counts or 'no outputs'}"


def run_replay(
    env: Research,
    *,
    start: int | None,
    end: int | None,
    source: str,
    run_id: str,
    overwrite: bool,
    policy_path: Path | None,
    feedback: bool,
    out: Path,
    read_progress: Progress | None = None,
    replay_progress: Callable[[int, int], None] | None = None,
    offsets: dict[str, dict[int, tuple[int, int]]] | None = None,
) -> ReplayDone:
    """A replay run of ``[start, end)`` from ``source``, or of exactly the Kafka ``offsets`` (topic -> partition
    -> first and last offset) within that window."""
    from execution.tracker import FeeSchedule
    from streams.core.conditions import ConditionTable
    from streams.core.digests import Digests, source_commit
    from streams.core.pipeline import CoreParts
    from streams.snapshots import worker_snapshots, write_run_file

    from .replay import replay, replay_features, run_dir, write_run

    policy = load_policy_file(env, policy_path)
    path = run_dir(out, run_id, overwrite)
    try:
        if offsets is not None:
            read = read_offsets(env, offsets, start, end, read_progress)
        elif source == FROM_FEATURES:
            from .from_features import read_features

            read = read_features(env, start, end, policy, out, read_progress)
        else:
            read = read_market(env, source, start, end, progress=read_progress)
    except BaseException:
        path.rmdir()
        raise
    digests = Digests(source_commit(), policy.digest, env.settings_digest)
    fees = env.fees
    total = len(read.records)
    parts = CoreParts.create(policy, digests, ConditionTable.load(env.conditions_file))
    tell = (lambda n: replay_progress(n, total)) if replay_progress else None
    if source == FROM_FEATURES:  # no ticks: setups and risk only
        result = replay_features(read.records, parts, tell)
    else:
        fee_schedule = FeeSchedule(fees.per_share_usd, fees.per_contract_usd, fees.per_order_usd)
        result = replay(read.records, parts, env.paper, fee_schedule, progress=tell, feedback_loop=feedback)
    meta = write_run(
        path,
        result,
        {
            "run_id": run_id,
            "source": read.source,
            "days": read.days,
            "from": iso(start),
            "to": iso(end),
            "from_ns": start,
            "to_ns": end,
            "offsets": {t: {str(p): list(r) for p, r in parts.items()} for t, parts in read.offsets.items()},
            "session_policy_digest": policy.digest,
            "env_hash": digests.env_hash,
            "source_commit": digests.source_commit,
            "policy_file": str(policy_path or env.policy_file),
            "feedback": feedback and source != FROM_FEATURES,
            "ticks": source != FROM_FEATURES,  # false: no paper broker ran (no quotes to fill against)
        },
    )
    snapshots = worker_snapshots(policy.canonical(), env.settings_snapshot, env.conditions_file)
    write_run_file(path, [s for s in snapshots if s.kind != "settings" or s.digest == env.settings_digest])
    return ReplayDone(path, meta, result.outputs, read.records)


def label_signals(
    env: Research,
    signals: list[dict[str, Any]],
    policy: Any,
    run_id: str | None,
    source: str = "kafka",
    quotes: Iterable[dict[str, Any]] | None = None,
    quotes_until: int | None = None,
    ticks: Any = None,
) -> list[dict[str, Any]]:
    """Label ``signals`` and upsert the rows into signal_labels. Quotes come from ``source`` over the
    signals' span plus the time stop; ``quotes`` (already read, up to ``quotes_until``) saves a re-read."""
    from sinks.labels import upsert_labels
    from streams.core.labels import label_all

    if not signals:
        return []
    horizon = int(policy.risk.time_stop_min * 60 * NS) + 60 * NS
    first = min(s["ts"] for s in signals) - 60 * NS
    last = max(s["ts"] for s in signals) + horizon
    if quotes is not None and quotes_until is not None:
        book = list(quotes)
        if quotes_until < last:  # the time stops of the last signals reach past what was read
            tail = read_market(env, source, quotes_until, last, (MARKET_QUOTES,))
            book += [q for _, q in tail.records]
    else:
        book = [q for _, q in read_market(env, source, first, last, (MARKET_QUOTES,)).records]
    rows = label_all(signals, book, policy.risk, run_id, ticks)
    upsert_labels(env.labels_database, rows)
    return rows


def write_labels(path: Path, rows: list[dict[str, Any]], name: str = "signal_labels.parquet") -> None:
    """Label rows (or realized rows: ``name``) as typed Parquet in the run (nothing without rows)."""
    import pyarrow.parquet as pq

    from schemas.arrow import typed_rows

    if rows:
        pq.write_table(typed_rows(rows), path / name)


def label_summary(rows: list[dict[str, Any]], signals: int) -> str:
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    mean_r = sum(r["r"] for r in rows) / len(rows) if rows else 0.0
    digest = rows[0]["rule_digest"] if rows else "-"
    counts = dict(sorted(outcomes.items()))
    return f"{len(rows)} of {signals} signals labelled (rule {digest}): {counts}, mean R {mean_r:+.3f}"


@dataclass
class Exported:
    rows: int
    labelled: int
    files: list[Path]


def export_run(path: Path, also_csv: bool) -> Exported | None:
    """dataset.parquet (+ .csv) and dataset.meta.json of the run at ``path``; None without rows."""
    import pyarrow.parquet as pq

    from schemas.arrow import to_records

    from .replay import read_run

    meta, outputs = read_run(path)
    labels, realized = (
        to_records(pq.read_table(path / name)) if (path / name).exists() else []
        for name in ("signal_labels.parquet", "realized.parquet")
    )
    keys = ("run_id", "source", "from", "to", "offsets", "session_policy_digest", "env_hash", "source_commit")
    meta = {k: meta.get(k) for k in keys}
    return write_dataset(path, outputs.get(SIGNALS, []), outputs.get(FEATURES, []), labels, meta, also_csv, realized)


def export_live(
    env: Research, start: int | None, end: int | None, policy: Any, path: Path, also_csv: bool, ticks: Any = None
) -> Exported | None:
    """The same dataset from the live ``signals`` and ``features`` topics of a range, labelled now."""
    from streams.core.labels import rule_digest

    from .realized import realized_rows

    read = read_market(env, "kafka", start, end, (SIGNALS, FEATURES, TRADE_LEDGER))
    signals = [r for topic, r in read.records if topic == SIGNALS]
    features = [r for topic, r in read.records if topic == FEATURES]
    if not signals:
        return None
    path.mkdir(parents=True, exist_ok=True)
    labels = label_signals(env, signals, policy, None, ticks=ticks)
    write_labels(path, labels)
    realized = realized_rows(signals, labels, [r for topic, r in read.records if topic == TRADE_LEDGER])
    write_labels(path, realized, "realized.parquet")
    digests = sorted({s["session_policy_digest"] for s in signals})
    commits = sorted({s["source_commit"] for s in signals})
    meta = {
        "source": "live topics (signals, features)",
        "from": iso(start),
        "to": iso(end),
        "offsets": {t: {str(p): list(r) for p, r in parts.items()} for t, parts in read.offsets.items()},
        "session_policy_digest": digests[0] if len(digests) == 1 else None,
        "session_policy_digests_seen": digests,
        "source_commits_seen": commits,
        "label_rule_digest": rule_digest(policy.risk, ticks),
    }
    return write_dataset(path, signals, features, labels, meta, also_csv, realized)


def write_dataset(
    path: Path,
    signals: list[dict[str, Any]],
    features: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    meta: dict[str, Any],
    also_csv: bool,
    realized: list[dict[str, Any]] | None = None,
) -> Exported | None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from schemas.arrow import typed_rows

    from .export import point_in_time

    rows, check = point_in_time(signals, features, labels, realized or ())
    if not rows:
        return None
    table = typed_rows(rows)
    files = [path / "dataset.parquet"]
    pq.write_table(table, files[0])
    if also_csv:
        files.append(path / "dataset.csv")
        pacsv.write_csv(table, files[1])
    sidecar = {**meta, "labels": "signal_labels.parquet" if labels else None, "columns": table.column_names, **check}
    (path / "dataset.meta.json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return Exported(check["rows"], check["labelled"], files)


def live_records(env: Research, meta: dict[str, Any], topics: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The live topics' records over the run's range, by topic."""
    from .sources import from_kafka

    read = from_kafka(env.kafka, env.serde, meta.get("from_ns"), meta.get("to_ns"), topics)
    live: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
    for topic, record in read.records:
        live[topic].append(record)
    return live


def drift_run(path: Path, live: dict[str, list[dict[str, Any]]], outputs: dict[str, list[dict[str, Any]]]) -> Any:
    """Compare and write drift.json; returns the :class:`backtest.drift.DriftReport`."""
    from .drift import compare

    report = compare(live, outputs)
    (path / "drift.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report


def signals_to_label(
    env: Research, run_path: Path | None, start: int | None, end: int | None
) -> tuple[list[dict[str, Any]], str]:
    """(signals, the source of their quotes): a replay run's own signals (with ``run_path``), or the live
    ``signals`` topic over [start, end)."""
    from .replay import read_run

    if run_path is not None:
        meta, outputs = read_run(run_path)
        return outputs.get(SIGNALS, []), str(meta.get("source", "kafka"))
    return [r for _, r in read_market(env, "kafka", start, end, (SIGNALS,)).records], "kafka"
