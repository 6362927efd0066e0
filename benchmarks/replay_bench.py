"""`scalp bench replay`: events/s of a replay through the full core (features, setups, risk) and the paper
broker, one process, on a synthetic SPY/QQQ tape of two mornings (the first warms the second, so signals are
promoted and orders, fills and ledger entries are on the measured path); the strategy core alone side by
side; and the same tape read back from Kafka (fetch, Avro decode, replay order) before the replay."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backtest.replay import digest, replay
from backtest.sources import MARKET, RANK, from_kafka
from benchmarks import verdict
from connectors.synthetic.records import session_records
from execution.settings import PaperSettings
from execution.tracker import FeeSchedule
from kafkaio.admin import TopicAdmin
from kafkaio.producer import AvroProducer
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from scalp.build import describe
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from schemas.topics import FILLS, ORDER_INTENTS, ORDERS, TRADE_LEDGER
from streams.core.digests import Digests
from streams.core.pipeline import CoreParts
from streams.core.policy import load_policy

from .compiled import run_in
from .ingest_bench import machine
from .streams_bench import core_alone

DAYS = (dt.date(2026, 11, 19), dt.date(2026, 11, 20))  # Thursday warms Friday (rvol needs a prior session)
PROMOTED = (ORDER_INTENTS, ORDERS, FILLS, TRADE_LEDGER)


def tape(events: int) -> list[tuple[str, dict[str, Any]]]:
    """``events`` records: the first half of them from the first morning, the rest from the second, each
    from the open on (so every minute of the second has the first's volume at that minute: warm)."""
    first = events // 2
    out: list[tuple[str, dict[str, Any]]] = []
    for day, n in zip(DAYS, (first, events - first), strict=True):
        out.extend(itertools.islice(session_records(day, ["SPY", "QQQ"], 3, "09:30", "16:00"), n))
    return out


def full_replay(records: list[tuple[str, dict[str, Any]]], *, ordered: bool = False) -> dict[str, Any]:
    """The replay of ``records``; ``ordered``: already in replay order (read from Kafka), else sorted here."""
    policy = load_policy()
    parts = CoreParts.create(policy, Digests("bench", policy.digest, "bench"))
    start = time.perf_counter()
    if not ordered:
        records = sorted(records, key=lambda item: (item[1]["ts"], RANK[item[0]]))  # the replay order
    result = replay(records, parts, PaperSettings(), FeeSchedule())
    seconds = time.perf_counter() - start
    outputs = {t: len(r) for t, r in result.outputs.items() if r}
    digests = {t: digest(r) for t, r in result.outputs.items() if r}
    return {"events": len(records), "seconds": seconds, "outputs": outputs, "digests": digests}


def in_memory(events: int, repeats: int) -> dict[str, Any]:
    """The in-memory runs in this interpreter (the build it loads: pure Python or compiled)."""
    records = tape(events)
    replays = [full_replay(records) for _ in range(repeats)]
    cores = [core_alone(records) for _ in range(repeats)]
    return {"build": describe(), "replay": replays, "core": cores}


def from_kafka_runs(
    kafka: KafkaSettings,
    serde_for: Callable[[KafkaSettings], AvroSerde],
    catalog: Catalog,
    records: list[tuple[str, dict[str, Any]]],
    repeats: int,
) -> list[dict[str, Any]]:
    """The tape produced once into topics of their own; then per run: a fetch-only pass (no decode), and
    `scalp replay --source kafka`'s path (fetch, decode, replay order, then the replay)."""
    kafka = kafka.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}_", "min_retention_ms": -1})
    serde = serde_for(kafka)
    admin = TopicAdmin(kafka, catalog)
    admin.create_all(with_dlq=False)
    try:
        producer = AvroProducer(kafka, serde)
        for topic, record in records:
            producer.produce(topic, record)
        producer.flush(300)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fetched = 0
            with RangeReader(kafka, "scalp-reader-bench") as reader:
                for topic in MARKET:
                    physical = kafka.topic(topic)
                    fetched += sum(1 for _ in reader.read(physical, reader.bounds(physical), 5000))
            fetch_s = time.perf_counter() - start
            start = time.perf_counter()
            read = from_kafka(kafka, serde, None, None)
            read_s = time.perf_counter() - start
            replayed = full_replay(read.records, ordered=True)
            runs.append(
                {
                    "events": len(read.records),
                    "fetched": fetched,
                    "fetch_seconds": fetch_s,
                    "read_seconds": read_s,
                    "replay_seconds": replayed["seconds"],
                    "seconds": read_s + replayed["seconds"],
                    "outputs": replayed["outputs"],
                }
            )
        return runs
    finally:
        admin.delete_prefixed(kafka.topic_prefix)


def run(
    events: int,
    repeats: int = 3,
    kafka: KafkaSettings | None = None,
    serde_for: Callable[[KafkaSettings], AvroSerde] | None = None,
    catalog: Catalog | None = None,
    compiled: Path | None = None,
) -> dict[str, Any]:
    """The in-memory runs in a fresh interpreter on the checkout (pure Python) and, with ``compiled`` (a
    compiled copy: benchmarks.compiled), on the compiled build; then the runs from Kafka (this process)."""
    pure = run_in(None, "benchmarks.replay_bench", str(events), str(repeats))
    builds = [pure] + ([run_in(compiled, "benchmarks.replay_bench", str(events), str(repeats))] if compiled else [])
    kafka_runs = (  # the tape is made here only for Kafka: the in-memory runs made their own
        from_kafka_runs(kafka, serde_for, catalog, tape(events), repeats)
        if kafka is not None and serde_for is not None and catalog is not None
        else []
    )
    digests = [run["digests"] for build in builds for run in build["replay"]]
    return {
        "machine": machine(),
        "events": pure["replay"][0]["events"],
        "builds": builds,
        "identical": all(d == digests[0] for d in digests),
        "kafka": kafka_runs,
    }


def _rates(runs: list[dict[str, Any]], seconds: str = "seconds") -> list[float]:
    return sorted(r["events"] / r[seconds] for r in runs)


def _rate(runs: list[dict[str, Any]], seconds: str = "seconds") -> str:
    rates = _rates(runs, seconds)
    return f"{rates[len(rates) // 2]:,.0f} ev/s (runs: {', '.join(f'{x:,.0f}' for x in rates)})"


def _median(runs: list[dict[str, Any]], seconds: str = "seconds") -> float:
    rates = _rates(runs, seconds)
    return float(rates[len(rates) // 2])


def markdown(results: dict[str, Any]) -> str:
    builds = results["builds"]
    outputs = builds[0]["replay"][0]["outputs"]
    kafka = results.get("kafka") or []
    lines = [
        "## Replay: a recorded session through the strategy core and the paper broker (`scalp bench replay`)",
        "",
        f"Machine: {results['machine']}. Tape: {results['events']:,} events of a synthetic SPY + QQQ tape "
        f"(connectors/synthetic): the mornings of {DAYS[0]} and {DAYS[1]}, half each, from the open, so the "
        "second is warm (relative volume has a prior session) and signals are promoted to orders; the shipped "
        "session policy; medians of 3 runs, each build in a fresh interpreter. Builds: the checkout (pure "
        "Python) and the compiled build (`SCALP_COMPILE=1`: the hot path compiled with mypyc, as the image "
        "ships it), the same source.",
        "",
        "| path | build | events/s |",
        "|---|---|---|",
    ]
    for build in builds:
        lines.append(
            "| replay in memory: sort + core + risk + paper broker and router (`backtest.replay`) | "
            f"{build['build']} | {_rate(build['replay'])} |"
        )
    for build in builds:
        lines.append(
            f"| peer: the strategy core alone (`StrategyCore`, as `scalp bench streams`) | {build['build']} | "
            f"{_rate(build['core'])} |"
        )
    if kafka:
        lines += [
            f"| from Kafka: fetch + Avro decode + replay order, then the replay (`scalp replay --source kafka`) | "
            f"{builds[0]['build']} | {_rate(kafka)} |",
            f"| of which the read alone: fetch + decode + order (`backtest.sources.from_kafka`) | "
            f"{builds[0]['build']} | {_rate(kafka, 'read_seconds')} |",
            f"| of which the fetch alone: the consumer's records, not decoded | {builds[0]['build']} | "
            f"{_rate(kafka, 'fetch_seconds')} |",
        ]
    promoted = ", ".join(f"{t} {outputs.get(t, 0):,}" for t in PROMOTED)
    lines += [
        "",
        f"Replay outputs: {', '.join(f'{t} {n:,}' for t, n in outputs.items())} (promoted to the router: "
        f"{promoted}). "
        + (
            "Every run of every build gave the same outputs, byte for byte (sha256 of each output topic)."
            if results["identical"]
            else "**The builds' outputs DIFFER** (sha256 of the output topics): the compiled build is wrong."
        )
        + " Target: 200k events/s in memory.",
        "",
    ]
    for build in builds:
        what = f"replay in memory ({build['build']})"
        lines.append("- " + verdict(what, _median(build["replay"]), 200_000, "events/s", at_least=True))
    if kafka:
        fetch, read, total = _median(kafka, "fetch_seconds"), _median(kafka, "read_seconds"), _median(kafka)
        decode_us = 1e6 / read - 1e6 / fetch
        lines += [
            f"- from Kafka: {total:,.0f} events/s end to end (no target). Per record the read costs "
            f"{1e6 / read:.1f} us, of which the fetch {1e6 / fetch:.1f} us and the decode and ordering "
            f"{decode_us:.1f} us; the replay {1e6 / _median(builds[0]['replay']):.1f} us. The read is what "
            "limits it: one consumer in the replay's process, records decoded one by one in Python.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":  # benchmarks.compiled.run_in: EVENTS REPEATS -> the in-memory runs as JSON
    print(json.dumps(in_memory(int(sys.argv[1]), int(sys.argv[2]))))
