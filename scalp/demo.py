"""`scalp demo`: the whole pipeline on synthetic sessions, each component as its own process.

1. synthetic sessions (a warm-up day and the demo day, a morning window each) through the real ingest path
   (a local Polygon-protocol server and `scalp ingest synthetic`);
2. `scalp streams` (features, signals, risk, intents), then `scalp execute --broker paper` (orders, fills,
   ledger, account snapshots), then `scalp sink --topics all` (every topic into its table), each with
   ``--until-idle`` so the demo ends;
3. `scalp backtest` over the days (replay of the same topics, labels, dataset export, drift against what ran
   live, the HTML report), then `scalp tune` on the exported dataset (a proposal next to the run; the live
   policy file is never touched).

Topics carry the prefix ``demo_`` (``SCALP_TOPIC_PREFIX`` when set wins) so the demo never mixes with live
topics; tables are shared (their unique keys make a re-run write nothing twice). Every step is idempotent:
ingest resumes from what Kafka holds, streams and sinks from their committed offsets, the router skips
what it published, the replay run is overwritten.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kafkaio.errors import ScalpError
from schemas.topics import MARKET_TRADES

from .settings import DEFAULT_CONFIG

DAYS = ("2026-11-19", "2026-11-20", "2026-11-23")  # a warm-up day, then two trading days (train, validation)
RANGE = ("2026-11-19", "2026-11-24")
WINDOW = ("09:30", "11:00")
RUN_ID = "demo"


class StepFailed(ScalpError):
    pass


@dataclass
class Step:
    name: str
    seconds: float
    last_line: str


@dataclass
class Demo:
    prefix: str
    config: Path
    runs: Path
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # result lines worth printing in the summary

    def env(self) -> dict[str, str]:
        # the demo's days are fixed (reproducible) and older than the ticks' 7-day retention by now: Kafka
        # would delete them minutes after they are written (it goes by the records' venue timestamps)
        return {
            **os.environ,
            "SCALP_TOPIC_PREFIX": self.prefix,
            "SCALP_CONFIG": str(self.config),
            "SCALP_MIN_RETENTION_MS": "-1",
        }

    def run(self, name: str, *args: str, timeout_s: float = 900) -> str:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "scalp.cli", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout_s,
            check=False,
        )
        seconds = time.monotonic() - start
        out = proc.stdout.strip()
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise StepFailed(f"demo step {name!r} failed (exit {proc.returncode}):\n{tail}")
        last = out.splitlines()[-1] if out else ""
        self.steps.append(Step(name, seconds, last))
        return out


def demo_config(source: Path | None, state_dir: Path) -> Path:
    """The user's config with the metrics ports off (a running worker may hold them)."""
    data: dict[str, Any] = yaml.safe_load((source or DEFAULT_CONFIG).read_text()) or {}
    data.setdefault("streams", {})["http_port"] = 0
    data.setdefault("sink", {})["http_port"] = 0
    data.setdefault("polygon", {})["http_port"] = 0
    data.setdefault("execution", {})["http_port"] = 0
    path = state_dir / "demo" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def has_day(kafka: Any, day: str) -> bool:
    """Whether market_trades already holds events of ``day``'s window (a re-run ingests nothing twice)."""
    import datetime as dt

    from kafkaio.reader import holds_between
    from streams.core.sessions import et_ns

    date = dt.date.fromisoformat(day)
    start = et_ns(date, *map(int, WINDOW[0].split(":")))
    end = et_ns(date, *map(int, WINDOW[1].split(":")))
    return holds_between(kafka, MARKET_TRADES, start, end)


def run_demo(demo: Demo, say: Callable[[str], None], kafka: Any) -> None:
    for day in DAYS:
        if has_day(kafka, day):
            say(f"ingest: {day} is already in the topics; not ingested again")
            continue
        say(f"ingest: synthetic session {day} {WINDOW[0]}-{WINDOW[1]} ET")
        demo.run(f"ingest {day}", "ingest", "synthetic", "--date", day, "--start", WINDOW[0], "--end", WINDOW[1])
    say("streams: features, setups, risk (Faust worker, until idle)")
    demo.run("streams", "streams", "--until-idle", "5")
    say("execute: paper broker (until idle)")
    demo.run("execute", "execute", "--broker", "paper", "--until-idle", "3")
    say("sink: every topic into its table (until idle)")
    demo.run("sink", "sink", "--topics", "all", "--until-idle", "5")
    say("backtest: replay, labels, export, drift against live, report")
    runs = str(demo.runs)
    out = demo.run(
        "backtest",
        *("backtest", "--from", RANGE[0], "--to", RANGE[1], "--run-id", RUN_ID, "--overwrite", "--no-feedback"),
        *("--csv", "--out", runs),
    )
    demo.notes += [line for line in out.splitlines() if line.startswith(("labels:", "export:", "drift:"))]
    say("tune: a proposal from the exported dataset (never applied)")
    proposed = str(demo.runs / RUN_ID / "session_policies.proposed.yaml")
    out = demo.run("tune", "tune", "--run", RUN_ID, "--out", runs, "--proposed", proposed)
    demo.notes += [line for line in out.splitlines() if line.startswith("tune ")]
