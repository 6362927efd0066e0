"""Replays: market records through the same strategy core as live, and the paper broker, into a run.

Each record goes, in the order of :mod:`backtest.sources`, through :class:`StrategyCore` (features,
setups, risk); order intents go to the router with the paper broker, which fills them against the quotes
that follow; closed trades and refused orders go back to the risk module, as the live loop does. Nothing
is written to the live topics: a run is a directory ``<out>/<run id>/`` with one Parquet file per output
topic and ``run.json`` (the source range and offsets, config digests, source commit, counts and a sha256
of every output). The same inputs and config give the same outputs, bit for bit (the digests say so).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from execution.audit import NullAudit
from execution.paper import PaperBroker, PaperPort
from execution.router import Router
from execution.settings import PaperSettings
from execution.tracker import Accountant, FeeSchedule
from kafkaio.errors import ConfigError
from schemas.topics import (
    ACCOUNT_SNAPSHOT,
    FEATURES,
    FILLS,
    MARKET_TRADES,
    ORDER_INTENTS,
    ORDERS,
    RISK_DAY,
    RISK_DECISIONS,
    SIGNALS,
    TRADE_LEDGER,
)
from streams.core.pipeline import CoreParts, StrategyCore

OUTPUT_TOPICS = (
    FEATURES,
    SIGNALS,
    RISK_DECISIONS,
    ORDER_INTENTS,
    RISK_DAY,
    ORDERS,
    FILLS,
    TRADE_LEDGER,
    ACCOUNT_SNAPSHOT,
)


@dataclass
class Replay:
    """The outputs of one replay, by topic, in the order they were produced."""

    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in OUTPUT_TOPICS})
    inputs: int = 0

    def add(self, topic: str, record: dict[str, Any]) -> None:
        self.outputs.setdefault(topic, []).append(record)


def replay(
    records: Iterable[tuple[str, dict[str, Any]]],
    parts: CoreParts,
    paper: PaperSettings,
    fees: FeeSchedule,
    progress: Callable[[int], None] | None = None,
    *,
    feedback_loop: bool = True,
) -> Replay:
    """``feedback_loop``: closed trades and refused orders reach the risk module at once (a closed loop,
    as live with the router running); off, risk sees only signals (as a live session whose router ran
    after the strategy, or not at all)."""
    core = StrategyCore(parts)
    broker = PaperBroker(paper)
    result = Replay()
    feedback: list[tuple[str, dict[str, Any]]] = []

    def emit(topic: str, record: dict[str, Any]) -> None:
        result.add(topic, record)
        if feedback_loop and topic in (TRADE_LEDGER, ORDERS):
            feedback.append((topic, record))

    router = Router(PaperPort(broker), Accountant(fees), emit, NullAudit(), lambda plan: "[]")

    def core_outputs(outputs: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, record in outputs:
            result.add(topic, record)
            if topic == ORDER_INTENTS:
                router.on_intent(record, record["ts"])

    def drain_feedback() -> None:
        while feedback:
            topic, record = feedback.pop(0)
            out = core.on_trade_closed(record) if topic == TRADE_LEDGER else core.on_order(record)
            core_outputs(out)

    n = 0
    for topic, record in records:  # per event: most give no output, so only what there is gets a call
        n += 1
        if topic == MARKET_TRADES:
            outputs = core.on_trade(record)
            if outputs:
                core_outputs(outputs)
        else:
            outputs = core.on_quote(record)
            if outputs:
                core_outputs(outputs)
            for update in broker.on_quote(record):
                router.on_update(update)
            router.on_clock(record["ts"], record["symbol"])
        if feedback:
            drain_feedback()
        if progress is not None and n % 50_000 == 0:
            progress(n)
    result.inputs = n
    core_outputs(core.finish())
    drain_feedback()
    return result


def replay_features(
    records: Iterable[tuple[str, dict[str, Any]]], parts: CoreParts, progress: Callable[[int], None] | None = None
) -> Replay:
    """Setups and risk driven by stored ``features`` records in event-time order (``--source features``):
    the snapshots of one event time together, as the live risk agent orders them. No ticks, so no paper
    broker: the outputs are signals, risk decisions, order intents and risk_day, and the stored snapshots
    themselves as the run's features."""
    from streams.core.features import Snapshot

    core = StrategyCore(parts)
    result = Replay()
    batch: list[Snapshot] = []

    def flush() -> None:
        for topic, record in core.on_snapshots(batch):
            result.add(topic, record)
        batch.clear()

    for n, (_, record) in enumerate(records, 1):
        if batch and record["ts"] != batch[0].ts:
            flush()
        batch.append(Snapshot.from_record(record, parts.calendar))
        result.add(FEATURES, record)  # the snapshots the run stood on (its dataset's features)
        result.inputs = n
        if progress is not None and n % 50_000 == 0:
            progress(n)
    flush()
    return result


# --- the run directory -----------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def digest(records: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for record in records:
        h.update(json.dumps(_canonical(record), sort_keys=True, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def run_dir(out: Path, run_id: str, overwrite: bool) -> Path:
    path = out / run_id
    if path.exists():
        if not overwrite:
            raise ConfigError(f"run {run_id!r} exists at {path}; pass --overwrite to replace it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_run(path: Path, result: Replay, meta: dict[str, Any]) -> dict[str, Any]:
    """``<topic>.parquet`` per output, typed from the topic's Avro schema (schemas/arrow.py: event times as
    timestamp[ns, UTC], money as decimal128), and run.json."""
    import pyarrow.parquet as pq

    from schemas.arrow import arrow_schema, to_table
    from schemas.catalog import catalog

    topics = catalog()
    outputs: dict[str, Any] = {}
    for topic, records in result.outputs.items():
        if records:
            pq.write_table(to_table(records, arrow_schema(topics[topic].schema)), path / f"{topic}.parquet")
        outputs[topic] = {"rows": len(records), "sha256": digest(records)}
    meta = {**meta, "inputs": result.inputs, "outputs": outputs}
    (path / "run.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return meta


def read_run(path: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """A run's meta and outputs, the records as the replay made them (event times in int ns)."""
    import pyarrow.parquet as pq

    from schemas.arrow import to_records

    meta_file = path / "run.json"
    if not meta_file.exists():
        raise ConfigError(f"no run at {path} (run.json missing)")
    meta = json.loads(meta_file.read_text())
    outputs: dict[str, list[dict[str, Any]]] = {}
    for topic in meta["outputs"]:
        file = path / f"{topic}.parquet"
        outputs[topic] = to_records(pq.read_table(file)) if file.exists() else []
    return meta, outputs
