"""A Python API for notebooks: runs and their outputs as DataFrames, replays with another policy, and the
configuration behind a digest. The settings are the CLI's (``$SCALP_CONFIG`` or the packaged file, then the
environment), read when first needed.

    from scalp import notebook as nb

    nb.runs()                              # every run under runs/, one row each
    run = nb.Run.load("bt")                # runs/bt
    run.trades                             # trade_ledger as a pandas DataFrame (event times: datetime64, UTC)
    run.frame(name, library="polars")     # any output: run.names lists them
    other = nb.replay(from_="2026-11-20", to="2026-11-21", policy="my_policy.yaml", run_id="mine")
    other.signals.groupby("setup").size()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtest.sources import SOURCES
from kafkaio.errors import ConfigError
from schemas import topics as t

from .context import Context
from .settings import load_settings

LIBRARIES = ("pandas", "polars", "arrow")
_contexts: dict[str, Context] = {}  # one per notebook kernel, as one per CLI process


def context(config: Path | str | None = None) -> Context:
    """The settings and components (the first call reads them; ``config``: read this file instead)."""
    if "current" not in _contexts or config is not None:
        _contexts["current"] = Context(load_settings(Path(config) if config is not None else None))
    return _contexts["current"]


@dataclass
class Run:
    """A replay or back-test run directory: ``run.json`` as :attr:`meta`, each Parquet output as a frame."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run: str | Path, out: str | Path = "runs") -> Run:
        """Run ``run`` (an id under ``out``, or a run directory's path)."""
        path = Path(run)
        if not (path / "run.json").exists():
            path = Path(out) / str(run)
        meta_file = path / "run.json"
        if not meta_file.exists():
            raise ConfigError(f"no run at {path} (run.json missing)")
        return cls(path, json.loads(meta_file.read_text()))

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id", self.path.name))

    @property
    def names(self) -> list[str]:
        """The outputs this run holds (features, signals, ..., signal_labels, dataset once made)."""
        return sorted(p.stem for p in self.path.glob("*.parquet"))

    def frame(self, name: str, *, library: str = "pandas") -> Any:
        """Output ``name`` as a pandas or polars DataFrame, or a pyarrow Table (``library``); an output the
        run did not write (no rows) is an empty frame with no columns."""
        if library not in LIBRARIES:
            raise ValueError(f"library must be one of {', '.join(LIBRARIES)}, not {library!r}")
        import pyarrow as pa
        import pyarrow.parquet as pq

        file = self.path / f"{name}.parquet"
        if not file.exists() and name not in self.meta.get("outputs", {}):
            raise KeyError(f"run {self.run_id} has no output {name!r} (it holds: {', '.join(self.names)})")
        table = pq.read_table(file) if file.exists() else pa.table({})
        if library == "arrow":
            return table
        if library == "polars":
            import polars as pl

            return pl.from_arrow(table)
        return table.to_pandas()

    def frames(self, *, library: str = "pandas") -> dict[str, Any]:
        return {name: self.frame(name, library=library) for name in self.names}

    # the usual ones, as pandas
    features = property(lambda self: self.frame(t.FEATURES))
    signals = property(lambda self: self.frame(t.SIGNALS))
    decisions = property(lambda self: self.frame(t.RISK_DECISIONS))
    orders = property(lambda self: self.frame(t.ORDERS))
    fills = property(lambda self: self.frame(t.FILLS))
    trades = property(lambda self: self.frame(t.TRADE_LEDGER))
    labels = property(lambda self: self.frame("signal_labels"))
    dataset = property(lambda self: self.frame("dataset"))

    def config(self, kind: str = "policy") -> dict[str, Any]:
        """The policy (``kind="policy"``) or settings (``"settings"``) this run ran with, from its digests."""
        key = {"policy": "session_policy_digest", "settings": "env_hash"}.get(kind)
        if key is None:
            raise ValueError("kind must be policy or settings")
        return config(self.meta[key], out=self.path.parent)


def runs(out: str | Path = "runs") -> Any:
    """Every run under ``out`` as a pandas DataFrame: id, source, range, inputs, digests, rows per output."""
    import pandas as pd

    rows = []
    for meta_file in sorted(Path(out).glob("*/run.json")):
        meta = json.loads(meta_file.read_text())
        outputs = meta.get("outputs", {})
        rows.append(
            {
                "run_id": meta.get("run_id", meta_file.parent.name),
                "source": meta.get("source"),
                "from": meta.get("from"),
                "to": meta.get("to"),
                "inputs": meta.get("inputs"),
                "session_policy_digest": meta.get("session_policy_digest"),
                "env_hash": meta.get("env_hash"),
                **{f"{name}_rows": o.get("rows", 0) for name, o in outputs.items()},
            }
        )
    return pd.DataFrame(rows)


def replay(
    *,
    from_: str | None = None,
    to: str | None = None,
    policy: str | Path | None = None,
    source: str = "auto",
    run_id: str | None = None,
    out: str | Path = "runs",
    overwrite: bool = False,
    feedback: bool = True,
    config_from: str | None = None,
    offsets_from: str | None = None,
) -> Run:
    """`scalp replay` from Python (the same arguments; no progress bars): the range from ``source`` through
    the strategy core and the paper broker with ``policy`` (a file; default: the configured one), written
    to ``out/<run id>``. Returns the run."""
    from .cli_research import offset_ranges, replay_with_progress

    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    ctx = context()
    out_dir = Path(out)
    research = None
    policy_path = Path(policy) if policy is not None else None
    if config_from is not None:
        from backtest.configs import rerun_research

        if policy_path is not None:
            raise ConfigError("config_from and policy: give one")
        research, policy_path = rerun_research(ctx.research(), out_dir, config_from)
    offsets = offset_ranges(out_dir, offsets_from, None)
    done = replay_with_progress(
        ctx, "replay", from_, to, source, run_id, overwrite, policy_path, feedback, out_dir, offsets, research,
        quiet=True,
    )  # fmt: skip
    return Run(done.path, done.meta)


def config(digest: str, out: str | Path = "runs") -> dict[str, Any]:
    """The policy or settings behind ``digest`` (a prefix of 8 hex digits or more will do) as a dict; the
    trade-condition table as ``{"conditions": <file text>}`` (see `scalp config show`)."""
    from backtest.configs import resolve

    snapshot, _ = resolve(context().research(), Path(out), digest)
    if snapshot.kind == "conditions":
        return {"conditions": snapshot.body}
    body: dict[str, Any] = json.loads(snapshot.body)
    return body
