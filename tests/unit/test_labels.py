"""Label rules on hand-built tapes: TP first, SL first, a gap through the stop, the time stop, shorts."""

from __future__ import annotations

from typing import Any

from streams.core.labels import Quotes, TickRule, label, rule_digest
from streams.core.policy import RiskParams

NS = 1_000_000_000
T0 = 1_795_185_600 * NS  # 09:40 ET
P = RiskParams(stop_bps=10.0, take_profit_r=1.5, time_stop_min=15.0)  # entry 100.00: stop 99.90, TP 100.15


def tape(*points: tuple[float, float, float]) -> Quotes:
    """(seconds after T0, bid, ask); the first is the quote the signal sees."""
    return Quotes.of([{"ts": T0 + int(s * NS), "bid": b, "ask": a} for s, b, a in points])


def sig(side: str = "long", at: float = 0.5) -> dict[str, Any]:
    return {"id": "s1", "ts": T0 + int(at * NS), "symbol": "SPY", "setup": "vwap_reclaim", "side": side}


def outcome(row: dict[str, Any] | None) -> tuple[Any, ...]:
    assert row is not None
    return row["outcome"], row["exit_price"], row["r"], row["mfe"], row["mae"]


def test_take_profit_first() -> None:
    q = tape((0, 99.99, 100.00), (1, 100.05, 100.06), (2, 99.95, 99.96), (3, 100.16, 100.17), (4, 99.0, 99.01))
    assert outcome(label(sig(), q, P, "d", None)) == ("TP", 100.16, 1.6, 1.6, -0.5)


def test_stop_first_then_the_take_profit_does_not_count() -> None:
    q = tape((0, 99.99, 100.00), (1, 100.10, 100.11), (2, 99.90, 99.91), (3, 100.20, 100.21))
    assert outcome(label(sig(), q, P, "d", None)) == ("SL", 99.90, -1.0, 1.0, -1.0)


def test_a_gap_through_the_stop_exits_at_the_gap_price() -> None:
    q = tape((0, 99.99, 100.00), (1, 99.95, 99.96), (2, 99.70, 99.71))
    assert outcome(label(sig(), q, P, "d", None)) == ("SL", 99.70, -3.0, 0.0, -3.0)


def test_time_stop_at_the_first_quote_after_it() -> None:
    q = tape((0, 99.99, 100.00), (60, 100.05, 100.06), (15 * 60 + 0.5, 100.08, 100.09), (15 * 60 + 2, 100.12, 100.13))
    row = label(sig(), q, P, "d", None)
    assert outcome(row) == ("TIME", 100.08, 0.8, 0.8, 0.0)
    assert row is not None
    assert row["exit_ts"] == T0 + int((15 * 60 + 0.5) * NS)


def test_short_exits_at_the_ask() -> None:
    # short entry at the bid 100.00: stop 100.10, TP 99.85
    q = tape((0, 100.00, 100.01), (1, 99.90, 99.91), (2, 99.84, 99.85))
    assert outcome(label(sig("short"), q, P, "d", None)) == ("TP", 99.85, 1.5, 1.5, 0.0)
    q = tape((0, 100.00, 100.01), (1, 100.09, 100.12))
    assert outcome(label(sig("short"), q, P, "d", None)) == ("SL", 100.12, -1.2, 0.0, -1.2)


def test_only_quotes_after_the_signal_count_and_none_before_means_no_label() -> None:
    # the quote at 0.6 s is after the signal (0.5 s); the one at 0.4 s is its entry quote
    q = tape((0.4, 99.99, 100.00), (0.6, 100.20, 100.21))
    row = label(sig(at=0.5), q, P, "d", "run-1")
    assert outcome(row) == ("TP", 100.20, 2.0, 2.0, 0.0)
    assert row is not None
    assert (row["entry_price"], row["run_id"]) == (100.00, "run-1")
    assert label(sig(at=0.1), q, P, "d", None) is None


def test_the_rule_digest_changes_with_the_rule() -> None:
    assert rule_digest(P) == rule_digest(RiskParams(stop_bps=10.0, take_profit_r=1.5, time_stop_min=15.0))
    assert rule_digest(P) != rule_digest(RiskParams(stop_bps=12.0))


def test_levels_in_ticks_instead_of_the_policy() -> None:
    ticks = TickRule(take_profit_ticks=5, stop_ticks=4)  # entry 100.00: TP 100.05, stop 99.96, 1R = 0.04
    q = tape((0, 99.99, 100.00), (1, 99.97, 99.98), (2, 100.05, 100.06))
    assert outcome(label(sig(), q, P, "d", None, ticks)) == ("TP", 100.05, 1.25, 1.25, -0.75)
    q = tape((0, 99.99, 100.00), (1, 100.03, 100.04), (2, 99.95, 99.96), (3, 100.10, 100.11))
    assert outcome(label(sig(), q, P, "d", None, ticks)) == ("SL", 99.95, -1.25, 0.75, -1.25)  # gap past 99.96
    q = tape((0, 100.00, 100.01), (1, 99.95, 99.96), (2, 99.94, 99.95))  # short at the bid: TP at an ask <= 99.95
    assert outcome(label(sig("short"), q, P, "d", None, ticks)) == ("TP", 99.95, 1.25, 1.25, 0.0)
    assert rule_digest(P, ticks) != rule_digest(P) != rule_digest(P, TickRule(5, 3))
