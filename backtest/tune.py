"""Tuning proposals: search setup thresholds on an exported dataset, split by day, propose, never apply.

A setup's state machine emits its candidates whatever its filters and ``promote_score`` are (filters and
score only decide the status), so on a dataset of every candidate (``scalp export``: all statuses, the
features of the exact snapshot, the label) the candidates that *would* be promoted under other values of
``promote_score``, ``min_rvol``, ``max_spread_bps`` and ``imbalance_min`` are known exactly, with their
labelled outcomes. :func:`check_current` proves it on each dataset: re-evaluating the current policy must
give back every recorded status, or nothing is proposed.

The search (grid or seeded random) runs per setup on the training days; the best candidate by the
objective (total R or expectancy, with a minimum number of trades) is proposed only if it also beats the
current values on the validation days, which come after the training days. State-machine thresholds
(``arm_bps``, ``touch_bps``, ...) change which candidates exist and need a replay per value; they are not
searched here. Risk limits (trades per day, open positions, cooldowns) are not simulated: results are per
signal, from the labels.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kafkaio.errors import ConfigError
from streams.core.features import spread_bps
from streams.core.policy import SessionPolicy, parse_policy
from streams.core.sessions import ET

PARAMS = ("promote_score", "min_rvol", "max_spread_bps", "imbalance_min")
FILTER_NAME = {"min_rvol": "min_rvol", "max_spread_bps": "max_spread", "imbalance_min": "imbalance"}
DEFAULT_SPACE: dict[str, tuple[float, ...]] = {
    "promote_score": (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8),
    "min_rvol": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
    "max_spread_bps": (1.0, 2.0, 3.0, 4.0, 5.0, 8.0),
    "imbalance_min": (-1.0, -0.6, -0.3, 0.0, 0.3),
}
BOUNDS = {
    "promote_score": (0.0, 1.0),
    "min_rvol": (0.0, 10.0),
    "max_spread_bps": (0.01, 100.0),
    "imbalance_min": (-1.0, 1.0),
}
OBJECTIVES = ("total_r", "expectancy")


class TuneError(ConfigError):
    """The dataset or the search settings cannot give a proposal."""


@dataclass(frozen=True)
class Candidates:
    """One setup's dataset rows as arrays (NaN where a feature or a label is missing)."""

    score: np.ndarray
    rvol: np.ndarray
    spread: np.ndarray
    imbalance: np.ndarray  # signed by side: a short's imbalance is negated, as the filter reads it
    other_blocked: np.ndarray  # blocked by a filter that is not searched (session, stale data, warm, ...)
    promoted: np.ndarray  # the recorded status
    r: np.ndarray
    day: np.ndarray  # index into Dataset.days

    def passes(self, p: Mapping[str, float]) -> np.ndarray:
        """Which candidates are promoted under ``p``: the same comparisons as streams/core/setups.py."""
        with np.errstate(invalid="ignore"):
            ok = ~self.other_blocked & (self.score >= p["promote_score"])
            if p["min_rvol"] > 0:
                ok &= self.rvol >= p["min_rvol"]
            ok &= self.spread <= p["max_spread_bps"]
            missing = np.isnan(self.imbalance)
            ok &= np.where(missing, p["imbalance_min"] <= -1, self.imbalance >= p["imbalance_min"])
        return ok


@dataclass(frozen=True)
class Dataset:
    days: tuple[str, ...]  # days with a candidate no unsearched filter blocked (the split is over these)
    setups: dict[str, Candidates]
    rows: int
    unlabelled: int
    idle_days: tuple[str, ...] = ()  # every candidate blocked by an unsearched filter (e.g. warm-up days)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def session_day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1e9, ET).date().isoformat()


def load_dataset(rows: Sequence[Mapping[str, Any]]) -> Dataset:
    """Rows of `scalp export` (dataset.parquet) -> per-setup arrays."""
    if not rows:
        raise TuneError("the dataset has no rows")
    missing = {"setup", "side", "ts", "score", "status", "filters_blocked", "f_rvol", "f_bid", "f_ask"} - set(rows[0])
    if missing:
        raise TuneError(f"the dataset lacks {', '.join(sorted(missing))}: export it again with this version")
    searched = set(FILTER_NAME.values())

    def other(r: Mapping[str, Any]) -> bool:
        return bool(set(filter(None, str(r["filters_blocked"]).split(","))) - searched)

    all_days = {session_day(int(r["ts"])) for r in rows}
    days = tuple(sorted({session_day(int(r["ts"])) for r in rows if not other(r)}))
    day_index = {d: i for i, d in enumerate(days)}
    by_setup: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_setup.setdefault(str(r["setup"]), []).append(r)
    setups = {}
    for name, rs in sorted(by_setup.items()):
        sign = np.array([1.0 if r["side"] == "long" else -1.0 for r in rs])
        setups[name] = Candidates(
            score=np.array([float(r["score"]) for r in rs]),
            rvol=np.array([_num(r["f_rvol"]) for r in rs]),
            spread=np.array([_num(spread_bps(r["f_bid"], r["f_ask"])) for r in rs]),
            imbalance=np.array([_num(r.get("f_ob_imbalance")) for r in rs]) * sign,
            other_blocked=np.array([other(r) for r in rs]),
            promoted=np.array([r["status"] == "promoted" for r in rs]),
            r=np.array([_num(r.get("label_r")) for r in rs]),
            day=np.array([day_index.get(session_day(int(r["ts"])), -1) for r in rs], dtype=np.int64),
        )
    unlabelled = sum(1 for r in rows if r.get("label_r") is None)
    return Dataset(days, setups, len(rows), unlabelled, tuple(sorted(all_days - set(days))))


def current_params(policy: SessionPolicy, setup: str) -> dict[str, float]:
    f = policy.filters_for(setup)
    return {
        "promote_score": policy.setup(setup).promote_score,
        "min_rvol": f.min_rvol,
        "max_spread_bps": f.max_spread_bps,
        "imbalance_min": f.imbalance_min,
    }


def check_current(data: Dataset, policy: SessionPolicy) -> None:
    """Re-evaluating the current policy must reproduce every recorded status (else the dataset is not
    this policy's, or the evaluation is not the live one, and any proposal would be fiction)."""
    for name, c in data.setups.items():
        wrong = int(np.sum(c.passes(current_params(policy, name)) != c.promoted))
        if wrong:
            raise TuneError(
                f"{name}: {wrong} of {len(c.score)} signals get a different status when the current policy is "
                "re-evaluated; the dataset was not produced with this policy (replay and export it again)"
            )


@dataclass(frozen=True)
class Stats:
    trades: int
    trades_per_day: float
    win_rate: float | None
    expectancy: float | None
    total_r: float

    @staticmethod
    def of(mask: np.ndarray, c: Candidates, days: np.ndarray) -> Stats:
        picked = mask & np.isin(c.day, days) & ~np.isnan(c.r)
        r = c.r[picked]
        n = int(r.size)
        return Stats(
            trades=n,
            trades_per_day=n / len(days) if len(days) else 0.0,
            win_rate=float(np.mean(r > 0)) if n else None,
            expectancy=float(np.mean(r)) if n else None,
            total_r=float(np.sum(r)),
        )

    def objective(self, name: str) -> float:
        return self.total_r if name == "total_r" else (self.expectancy or 0.0)


@dataclass
class SetupResult:
    setup: str
    current: dict[str, float]
    best: dict[str, float]
    decision: str  # proposed | kept: <why>
    train_before: Stats
    train_after: Stats
    validation_before: Stats
    validation_after: Stats
    evaluated: int

    @property
    def proposed(self) -> bool:
        return self.decision == "proposed"

    def changes(self) -> dict[str, float]:
        return {k: v for k, v in self.best.items() if v != self.current[k]} if self.proposed else {}


@dataclass
class Search:
    kind: str = "grid"  # grid | random
    samples: int = 200
    seed: int = 0
    objective: str = "total_r"
    min_trades: int = 5
    validation_days: int | None = None  # default: a third of the days, at least one
    space: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_SPACE))


def read_space(data: Any, source: str) -> dict[str, tuple[float, ...]]:
    """A search space file: ``{param: [values...]}`` for any of PARAMS (the rest keep the defaults)."""
    if not isinstance(data, dict):
        raise TuneError(f"{source}: expected a mapping of parameter -> list of values")
    space = dict(DEFAULT_SPACE)
    for key, values in data.items():
        if key not in PARAMS:
            raise TuneError(f"{source}: unknown parameter {key!r} (searched: {', '.join(PARAMS)})")
        if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
            raise TuneError(f"{source}: {key} must be a non-empty list of numbers")
        low, high = BOUNDS[key]
        bad = [v for v in values if not low <= v <= high]
        if bad:
            raise TuneError(f"{source}: {key} value {bad[0]} is outside [{low}, {high}]")
        space[key] = tuple(sorted({float(v) for v in values}))
    return space


def candidates(search: Search, current: Mapping[str, float]) -> list[dict[str, float]]:
    """The current values first, then the grid (with the current values added) or seeded random draws."""
    if search.kind == "grid":
        axes = [sorted(set(search.space[p]) | {current[p]}) for p in PARAMS]
        combos = [dict(zip(PARAMS, values, strict=True)) for values in itertools.product(*axes)]
    else:
        rng = random.Random(search.seed)  # noqa: S311 - a reproducible search, not secrets
        combos = [
            {p: round(rng.uniform(min(search.space[p]), max(search.space[p])), 3) for p in PARAMS}
            for _ in range(search.samples)
        ]
    return [dict(current), *(c for c in combos if c != current)]


def split(days: Sequence[str], validation_days: int | None) -> tuple[list[str], list[str]]:
    if len(days) < 2:
        raise TuneError(
            f"tuning needs tradable signals on at least 2 days for a train/validation split; the dataset has "
            f"{len(days)} ({', '.join(days) or 'none'}; days where only unsearched filters such as warm or session "
            "blocked do not count): back-test a longer range"
        )
    n = validation_days if validation_days is not None else max(1, round(len(days) / 3))
    if not 1 <= n < len(days):
        raise TuneError(f"--validation-days must be between 1 and {len(days) - 1} for {len(days)} days")
    return list(days[:-n]), list(days[-n:])


def tune(data: Dataset, policy: SessionPolicy, search: Search) -> tuple[list[SetupResult], list[str], list[str]]:
    if search.objective not in OBJECTIVES:
        raise TuneError(f"unknown objective {search.objective!r} (one of {', '.join(OBJECTIVES)})")
    check_current(data, policy)
    train_days, validation_days = split(data.days, search.validation_days)
    index = {d: i for i, d in enumerate(data.days)}
    train = np.array([index[d] for d in train_days])
    valid = np.array([index[d] for d in validation_days])
    results = []
    for name, c in data.setups.items():
        now = current_params(policy, name)
        options = candidates(search, now)
        best, best_key = None, None
        for i, p in enumerate(options):
            stats = Stats.of(c.passes(p), c, train)
            if stats.trades < search.min_trades:
                continue
            changed = sum(1 for k in PARAMS if p[k] != now[k])
            key = (stats.objective(search.objective), stats.trades, -changed, -i)
            if best_key is None or key > best_key:
                best, best_key = p, key
        before_mask = c.passes(now)
        if best is None:
            chosen, decision = now, f"kept: no values give {search.min_trades} trades on the training days"
        else:
            chosen = best
            after_v = Stats.of(c.passes(best), c, valid).objective(search.objective)
            before_v = Stats.of(before_mask, c, valid).objective(search.objective)
            if best == now:
                decision = "kept: the current values are the best on the training days"
            elif after_v > before_v + 1e-9:
                decision = "proposed"
            else:
                decision = "kept: not better on the validation days"
        mask = c.passes(chosen)
        results.append(
            SetupResult(
                name,
                now,
                dict(chosen),
                decision,
                Stats.of(before_mask, c, train),
                Stats.of(mask, c, train),
                Stats.of(before_mask, c, valid),
                Stats.of(mask, c, valid),
                len(options),
            )
        )
    return results, train_days, validation_days


def propose(live_text: str, results: Iterable[SetupResult], header: Sequence[str]) -> str:
    """The live policy text with the proposed values (comments and order kept), under a header."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.width = 120
    doc = yaml.load(live_text)
    setups = doc.setdefault("setups", CommentedMap())
    for result in results:
        for param, value in result.changes().items():
            node = setups.get(result.setup)
            if node is None:
                node = setups[result.setup] = CommentedMap()
            if param == "promote_score":
                node[param] = value
            else:
                filters = node.get("filters")
                if filters is None:
                    filters = node["filters"] = CommentedMap()
                filters[param] = value
    out = io.StringIO()
    yaml.dump(doc, out)
    return "".join(f"# {line}\n" for line in header) + out.getvalue()


def validate(text: str, source: str) -> SessionPolicy:
    import yaml

    return parse_policy(yaml.safe_load(text), source)


def diff(before: str, after: str, before_name: str, after_name: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), before_name, after_name))


def _fmt(value: float | None, spec: str = "+.3f") -> str:
    return "-" if value is None else format(value, spec)


def _stats_cells(s: Stats) -> list[str]:
    win = "-" if s.win_rate is None else f"{s.win_rate:.0%}"
    return [str(s.trades), f"{s.trades_per_day:.2f}", win, _fmt(s.expectancy), f"{s.total_r:+.2f}"]


def report_markdown(
    results: Sequence[SetupResult], train: Sequence[str], validation: Sequence[str], info: Mapping[str, Any]
) -> str:
    lines = [
        "# Tuning proposal (for review; the live policy is unchanged)",
        "",
        f"- dataset: `{info['dataset']}` ({info['rows']} signals, {info['unlabelled']} unlabelled)",
        f"- live policy: `{info['policy_file']}` digest `{info['policy_digest'][:16]}`",
        f"- proposal: `{info['proposed_file']}` digest `{info['proposed_digest'][:16]}`",
        f"- search: {info['search']}; objective {info['objective']}; at least {info['min_trades']} trades on train",
        f"- train days: {', '.join(train)}",
        f"- days left out (every candidate blocked by an unsearched filter, e.g. warm-up): "
        f"{', '.join(info['idle_days']) or 'none'}",
        f"- validation days: {', '.join(validation)}",
        "",
        'Per signal, from the labels (TP / SL / time stop); risk limits are not simulated. "current" is the live',
        "policy's values, \"best on train\" the search's best on the training days (proposed only when it also",
        "beats the current values on the validation days).",
        "",
        "| setup | decision | parameter changes | split | trades | /day | win | expectancy R | total R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        change = ", ".join(f"{k} {r.current[k]:g} -> {v:g}" for k, v in r.changes().items()) or "-"
        for split_name, before, after in (
            ("train", r.train_before, r.train_after),
            ("validation", r.validation_before, r.validation_after),
        ):
            for when, s in (("current", before), ("best on train", after)):
                cells = [r.setup, r.decision, change, f"{split_name} {when}", *_stats_cells(s)]
                lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Policy diff", "", "```diff", info["diff"].rstrip() or "(no change proposed)", "```", ""]
    return "\n".join(lines)


def report_json(results: Sequence[SetupResult], train: Sequence[str], validation: Sequence[str]) -> dict[str, Any]:
    return {
        "train_days": list(train),
        "validation_days": list(validation),
        "setups": [{**asdict(r), "changes": r.changes()} for r in results],
    }


def load_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.exists():
        raise TuneError(f"no dataset at {path} (run `scalp export --run R` or `scalp backtest` first)")
    from schemas.arrow import to_records

    return to_records(pq.read_table(path))
