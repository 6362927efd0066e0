"""`scalp bench replay`: events/s of a replay through the full core (features, setups, risk) and the paper
broker, one process, on a synthetic SPY/QQQ session tape; the strategy core alone side by side."""

from __future__ import annotations

import time
from typing import Any

from backtest.replay import replay
from backtest.sources import RANK
from benchmarks import verdict
from execution.paper import PaperSettings
from execution.tracker import FeeSchedule
from streams.core.digests import Digests
from streams.core.pipeline import CoreParts
from streams.core.policy import load_policy

from .ingest_bench import machine
from .streams_bench import core_alone, tape


def full_replay(records: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    policy = load_policy()
    parts = CoreParts.create(policy, Digests("bench", policy.digest, "bench"))
    start = time.perf_counter()
    ordered = sorted(records, key=lambda item: (item[1]["ts"], RANK[item[0]]))  # the replay order
    result = replay(ordered, parts, PaperSettings(), FeeSchedule())
    seconds = time.perf_counter() - start
    outputs = {t: len(r) for t, r in result.outputs.items() if r}
    return {"events": len(records), "seconds": seconds, "outputs": outputs}


def run(events: int, repeats: int = 3) -> dict[str, Any]:
    records = tape(events)
    replays = [full_replay(records) for _ in range(repeats)]
    cores = [core_alone(records) for _ in range(repeats)]
    return {"machine": machine(), "events": len(records), "replay": replays, "core": cores}


def markdown(results: dict[str, Any]) -> str:
    def rate(runs: list[dict[str, Any]]) -> str:
        rates = sorted(r["events"] / r["seconds"] for r in runs)
        return f"{rates[len(rates) // 2]:,.0f} ev/s (runs: {', '.join(f'{x:,.0f}' for x in rates)})"

    def median(runs: list[dict[str, Any]]) -> float:
        return float(sorted(r["events"] / r["seconds"] for r in runs)[len(runs) // 2])

    outputs = results["replay"][0]["outputs"]
    lines = [
        "## Replay: a recorded session through the strategy core and the paper broker (`scalp bench replay`)",
        "",
        f"Machine: {results['machine']}. Tape: {results['events']:,} events of a synthetic SPY + QQQ session "
        "(connectors/synthetic), in memory; medians of 3 runs.",
        "",
        "| path | events/s |",
        "|---|---|",
        f"| replay: sort + core + risk + paper broker and router (`backtest.replay`) | {rate(results['replay'])} |",
        f"| peer: the strategy core alone (`StrategyCore`, as `scalp bench streams`) | {rate(results['core'])} |",
        "",
        f"Replay outputs: {', '.join(f'{t} {n:,}' for t, n in outputs.items())}. Target: 200k events/s.",
        "",
        "- " + verdict("replay", median(results["replay"]), 200_000, "events/s", at_least=True),
        "",
        "Reading the inputs from Kafka (fastavro decode, ~5 us per record here) comes on top when `scalp replay`"
        " reads topics.",
    ]
    return "\n".join(lines)
