"""Realized labels: what the live trades of promoted signals actually made, next to their simulated labels.

The plan's step 2 labels outcomes from ``fills`` and ``account_snapshot``; the router turns those into one
``trade_ledger`` record per round trip (realized PnL after fees, R, exit reason, the fills it used). A
promoted signal that traded live gets one realized row: R and PnL summed over its round trips, the last
exit's reason, time and price, next to its simulated TP/SL/TIME label (when it has one). The comparison
says how far the simulation is from what the account saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# the simulated outcome each live exit reason corresponds to (flatten, eod and halt close like a time stop)
OUTCOME_OF_EXIT = {"tp": "TP", "sl": "SL", "time": "TIME", "eod": "TIME", "flatten": "TIME", "halt": "TIME"}


def realized_rows(
    signals: Sequence[dict[str, Any]], labels: Sequence[dict[str, Any]], ledger: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per signal with live round trips in ``ledger``, in signal time order."""
    trades: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(ledger, key=lambda r: (r["ts"], r["id"])):
        trades.setdefault(t["signal_id"], []).append(t)
    signal_of = {s["id"]: s for s in signals}
    label_of = {lab["signal_id"]: lab for lab in labels}
    rows = []
    for signal_id, legs in trades.items():
        s = signal_of.get(signal_id, {})
        lab = label_of.get(signal_id, {})
        last = legs[-1]
        rows.append(
            {
                "signal_id": signal_id,
                "ts": s.get("ts", legs[0]["ts_open"]),
                "symbol": s.get("symbol", last["symbol"]),
                "setup": s.get("setup"),
                "side": s.get("side", last["side"]),
                "sim_outcome": lab.get("outcome"),
                "sim_r": lab.get("r"),
                "sim_exit_ts": lab.get("exit_ts"),
                "sim_exit_price": lab.get("exit_price"),
                "realized_r": sum(float(t["r_multiple"]) for t in legs),
                "realized_pnl": sum(float(t["realized_pnl"]) for t in legs),
                "realized_fees": sum(float(t["fees"]) for t in legs),
                "realized_exit_reason": last["exit_reason"],
                "realized_exit_ts": last["ts"],
                "realized_exit_price": float(last["exit_price"]),
                "realized_entry_price": float(legs[0]["entry_price"]),
                "round_trips": len(legs),
            }
        )
    return sorted(rows, key=lambda r: (r["ts"], r["signal_id"]))


def compare(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Simulated against realized over the rows with both: counts, mean R each side, the mean gap, how often
    the outcome agrees, per setup too."""

    def stats(part: Sequence[dict[str, Any]]) -> dict[str, Any]:
        both = [r for r in part if r["sim_r"] is not None]
        n = len(both)
        agree = sum(1 for r in both if OUTCOME_OF_EXIT.get(r["realized_exit_reason"]) == r["sim_outcome"])
        return {
            "traded": len(part),
            "labelled": n,
            "sim_mean_r": sum(r["sim_r"] for r in both) / n if n else None,
            "realized_mean_r": sum(r["realized_r"] for r in both) / n if n else None,
            "mean_gap_r": sum(r["realized_r"] - r["sim_r"] for r in both) / n if n else None,
            "outcome_agreement": agree / n if n else None,
            "realized_pnl": sum(r["realized_pnl"] for r in part),
        }

    setups = sorted({r["setup"] or "?" for r in rows})
    return {"all": stats(rows), "per_setup": {s: stats([r for r in rows if (r["setup"] or "?") == s]) for s in setups}}
