"""Label rules: the TP / SL / TIME outcome of a signal from the quotes after it (pure, event time).

For a signal at ``ts`` the entry is the touch of the last quote at or before ``ts`` (the ask for a long,
the bid for a short), the stop and take-profit are the risk module's levels (``stop_bps``, then
``take_profit_r`` R; :func:`streams.core.risk.bracket_levels`) and the time stop is ``time_stop_min``
later. Then every quote strictly after ``ts`` is walked in order, valuing the position where it could
be closed (the bid for a long, the ask for a short):
- at or through the stop -> ``SL`` at that price (a gap through the stop exits worse than the stop);
- at or through the take-profit -> ``TP`` at that price;
- at or after the time stop (or the end of the quotes) -> ``TIME`` at that quote's price.
With a :class:`TickRule` the stop and take-profit are instead whole ticks from the entry (risk = the
stop distance). The stop is checked first: a single tick cannot touch both, and where an ambiguity could exist the
rule takes the pessimistic side. R is the exit's PnL per share over the risk per share; MFE and MAE are
the best and worst R seen up to and including the exit (MAE is <= 0).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .policy import RiskParams
from .risk import bracket_levels

NS = 1_000_000_000
RULE_VERSION = 1


@dataclass(frozen=True, slots=True)
class TickRule:
    """TP and SL in ticks from the entry instead of the risk module's levels."""

    take_profit_ticks: int
    stop_ticks: int
    tick_size: float = 0.01

    def levels(self, entry: float | None, long: bool) -> tuple[float, float, float] | None:
        if entry is None or entry <= 0 or self.stop_ticks <= 0 or self.take_profit_ticks <= 0:
            return None
        risk = round(self.stop_ticks * self.tick_size, 6)
        reward = round(self.take_profit_ticks * self.tick_size, 6)
        stop, take = (entry - risk, entry + reward) if long else (entry + risk, entry - reward)
        if stop <= 0 or take <= 0:
            return None
        return round(stop, 6), round(take, 6), risk


def rule_digest(p: RiskParams, ticks: TickRule | None = None) -> str:
    body: dict[str, Any] = {"v": RULE_VERSION, "time_stop_min": p.time_stop_min}
    if ticks is None:
        body |= {"stop_bps": p.stop_bps, "take_profit_r": p.take_profit_r}
    else:
        body |= {"stop_ticks": ticks.stop_ticks, "take_profit_ticks": ticks.take_profit_ticks, "tick": ticks.tick_size}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Quotes:
    """One symbol's quotes in event-time order (``ts`` ascending) as parallel lists."""

    ts: list[int]
    bid: list[float]
    ask: list[float]

    @staticmethod
    def of(records: Sequence[dict[str, Any]]) -> Quotes:
        ordered = sorted(records, key=lambda q: q["ts"])
        valid = [q for q in ordered if q.get("bid") and q.get("ask") and 0 < q["bid"] <= q["ask"]]
        return Quotes([q["ts"] for q in valid], [q["bid"] for q in valid], [q["ask"] for q in valid])


def label(
    signal: dict[str, Any],
    quotes: Quotes,
    p: RiskParams,
    digest: str,
    run_id: str | None,
    ticks: TickRule | None = None,
) -> dict[str, Any] | None:
    """The ``signal_labels`` row of ``signal``; None when no quote precedes it (no entry price)."""
    ts, long = signal["ts"], signal["side"] == "long"
    at = bisect.bisect_right(quotes.ts, ts) - 1
    if at < 0:
        return None
    entry = quotes.ask[at] if long else quotes.bid[at]
    levels = bracket_levels(entry, long, p) if ticks is None else ticks.levels(entry, long)
    if levels is None:
        return None
    stop, take, risk = levels
    time_stop = ts + int(p.time_stop_min * 60 * NS)
    exit_side = quotes.bid if long else quotes.ask
    sign = 1.0 if long else -1.0
    best = worst = 0.0
    outcome, exit_i = "TIME", len(quotes.ts) - 1
    for i in range(at + 1, len(quotes.ts)):
        price = exit_side[i]
        r = sign * (price - entry) / risk
        best, worst = max(best, r), min(worst, r)
        if (price <= stop) if long else (price >= stop):
            outcome, exit_i = "SL", i
            break
        if (price >= take) if long else (price <= take):
            outcome, exit_i = "TP", i
            break
        if quotes.ts[i] >= time_stop:
            outcome, exit_i = "TIME", i
            break
    exit_price = exit_side[exit_i] if exit_i > at else entry
    return {
        "signal_id": signal["id"],
        "rule_digest": digest,
        "ts": ts,
        "symbol": signal["symbol"],
        "setup": signal["setup"],
        "side": signal["side"],
        "entry_price": entry,
        "outcome": outcome,
        "exit_ts": quotes.ts[exit_i] if exit_i > at else ts,
        "exit_price": exit_price,
        "r": round(sign * (exit_price - entry) / risk, 6),
        "mfe": round(best, 6),
        "mae": round(worst, 6),
        "run_id": run_id,
    }


def label_all(
    signals: Sequence[dict[str, Any]],
    quotes: Iterable[dict[str, Any]],
    p: RiskParams,
    run_id: str | None,
    ticks: TickRule | None = None,
) -> list[dict[str, Any]]:
    """Label rows of ``signals`` from the quotes of every symbol (those without an entry quote are left out)."""
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for q in quotes:
        by_symbol.setdefault(q["symbol"], []).append(q)
    books = {symbol: Quotes.of(qs) for symbol, qs in by_symbol.items()}
    digest, empty = rule_digest(p, ticks), Quotes([], [], [])
    return [row for s in signals if (row := label(s, books.get(s["symbol"], empty), p, digest, run_id, ticks))]
