"""Point-in-time datasets: each signal with the features as of its time and its label.

For a signal at ``ts`` the features are the symbol's latest snapshot with ``ts <= signal ts`` (never a
later one: no look-ahead), columns prefixed ``f_``; the label columns are prefixed ``label_``; a signal
that traded live has its realized outcome in ``realized_*`` (R, PnL, exit reason and time). Every row
carries ``feature_ts`` and the builder checks ``feature_ts <= ts`` for all rows before anything is
written; the sidecar records the check with the largest feature age.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from kafkaio.errors import ScalpError
from schemas.topics import SIGNALS

FEATURE_COLUMNS = (
    "session", "vwap", "sigma_upper", "sigma_lower", "ema20", "ema50", "ema20_slope", "rvol", "hod", "lod",
    "prev_close", "cvd", "ob_imbalance", "last_price", "bid", "ask", "lookback_min", "lookback_days", "warm",
)  # fmt: skip
SIGNAL_COLUMNS = ("id", "symbol", "ts", "session", "setup", "side", "score", "status")
LABEL_COLUMNS = ("outcome", "entry_price", "exit_ts", "exit_price", "r", "mfe", "mae", "rule_digest")
# the live outcome of a signal that traded (None otherwise), next to its simulated label
REALIZED_COLUMNS = ("realized_r", "realized_pnl", "realized_exit_reason", "realized_exit_ts")


class LookAhead(ScalpError, AssertionError):
    """A row would use a feature snapshot from after its signal."""


def point_in_time(
    signals: Sequence[dict[str, Any]],
    features: Sequence[dict[str, Any]],
    labels: Sequence[dict[str, Any]],
    realized: Sequence[dict[str, Any]] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, check): rows in signal time order; check = counts and the feature-age bounds. ``realized``:
    the live outcome of the signals that traded (backtest/realized.py), next to the simulated label."""
    by_symbol: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
    for f in sorted(features, key=lambda r: (r["symbol"], r["ts"])):
        times, snaps = by_symbol.setdefault(f["symbol"], ([], []))
        times.append(f["ts"])
        snaps.append(f)
    label_of = {lab["signal_id"]: lab for lab in labels}
    realized_of = {r["signal_id"]: r for r in realized}
    rows: list[dict[str, Any]] = []
    ages: list[int] = []
    without_features = 0
    for s in sorted(signals, key=lambda r: (r["ts"], r["id"])):
        times, snaps = by_symbol.get(s["symbol"], ([], []))
        i = bisect.bisect_right(times, s["ts"]) - 1
        if i < 0:
            without_features += 1
            continue
        snap = snaps[i]
        row: dict[str, Any] = {c: s.get(c) for c in SIGNAL_COLUMNS}
        row["filters_blocked"] = ",".join(s.get("filters_blocked") or ())  # what `scalp tune` re-evaluates
        row["feature_ts"] = snap["ts"]
        row.update({f"f_{c}": snap.get(c) for c in FEATURE_COLUMNS})
        lab = label_of.get(s["id"])
        row.update({f"label_{c}": (lab or {}).get(c) for c in LABEL_COLUMNS})
        live = realized_of.get(s["id"]) or {}
        row.update({c: live.get(c) for c in REALIZED_COLUMNS})
        if row["feature_ts"] > row["ts"]:
            raise LookAhead(f"signal {s['id']}: features at {row['feature_ts']} are after the signal at {s['ts']}")
        ages.append(row["ts"] - row["feature_ts"])
        rows.append(row)
    check = {
        "rows": len(rows),
        SIGNALS: len(signals),
        "signals_without_features": without_features,
        "labelled": sum(1 for r in rows if r["label_outcome"] is not None),
        "realized": sum(1 for r in rows if r["realized_r"] is not None),
        "look_ahead": "none: every feature_ts <= its signal ts",
        "max_feature_age_ms": max(ages) / 1e6 if ages else None,
        "min_feature_age_ms": min(ages) / 1e6 if ages else None,
    }
    return rows, check
