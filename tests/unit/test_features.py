"""The FeatureEngine against an independent, direct computation of the feature definitions (docs/streams.md)
on generated tapes.

The reference below recomputes every feature of every snapshot from scratch (the whole history of events
before the snapshot time), in plain loops over the tape, sharing no code with streams/core/features.py.
Tapes: an ordinary pair of days, the first trading day after the November DST change (the open moves from
13:30 to 14:30 UTC), and the day after Thanksgiving (close at 13:00 ET), each with a prior session.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.synthetic.records import session_records
from streams.core.conditions import ConditionTable
from streams.core.features import Snapshot, SymbolFeatures
from streams.core.merge import QUOTE, TRADE
from streams.core.policy import FeatureParams
from streams.core.sessions import Calendar

ET = ZoneInfo("America/New_York")
MIN = 60_000_000_000
TAPES = {
    "ordinary": [(dt.date(2026, 11, 18), "09:30", "10:10"), (dt.date(2026, 11, 19), "09:20", "10:20")],
    "dst": [(dt.date(2026, 10, 30), "09:30", "10:10"), (dt.date(2026, 11, 2), "09:20", "10:20")],
    "half_day": [(dt.date(2026, 11, 25), "12:30", "13:10"), (dt.date(2026, 11, 27), "12:30", "13:20")],
}


def _events(windows: list[tuple[dt.date, str, str]], symbol: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for day, start, end in windows:
        for topic, record in session_records(day, [symbol], 5, start, end):
            out.append((TRADE if topic == "market_trades" else QUOTE, record))
    # the merge order: (ts, seq, quote before trade)
    out.sort(key=lambda e: (e[1]["ts"], e[1]["seq"], 0 if e[0] == QUOTE else 1))
    return out


def _engine_snapshots(events: list[tuple[str, dict[str, Any]]], params: FeatureParams) -> list[Snapshot]:
    engine = SymbolFeatures(events[0][1]["symbol"], params, Calendar(), ConditionTable.load())
    snaps = []
    for kind, r in events:
        if kind == TRADE:
            snap = engine.on_trade(r["ts"], r["price"], r["size"], r["conditions"])
        else:
            snap = engine.on_quote(r["ts"], r["bid"], r["ask"], r["bid_size"], r["ask_size"])
        if snap is not None:
            snaps.append(snap)
    return snaps


@functools.cache
def _bounds(date: dt.date) -> tuple[int, int, int, int]:
    import exchange_calendars as xcals

    cal = xcals.get_calendar("XNYS")
    open_ns = int(cal.session_open(date.isoformat()).value)
    close_ns = int(cal.session_close(date.isoformat()).value)
    pre = int(dt.datetime(date.year, date.month, date.day, 4, tzinfo=ET).timestamp()) * 10**9
    post = int(dt.datetime(date.year, date.month, date.day, 20, tzinfo=ET).timestamp()) * 10**9
    return pre, open_ns, close_ns, post


class Reference:
    """Direct computation of the features at time t from all events before t."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]], params: FeatureParams) -> None:
        self.events = events
        self.params = params
        self.rules = ConditionTable.load().rules

    def _ok(self, conditions: list[int], which: int) -> bool:
        # which: 0 high_low, 1 last, 2 volume
        return all(self.rules.get(c, (True, True, True))[which] for c in conditions)

    def _price_ok(self, r: dict[str, Any]) -> bool:
        return r["size"] > 0 and self._ok(r["conditions"], 0) and self._ok(r["conditions"], 1)

    @staticmethod
    def session_of(ts: int) -> tuple[dt.date, str, int, int]:
        """(date, phase, phase start ns, phase end ns) straight from exchange_calendars."""
        date = dt.datetime.fromtimestamp(ts / 1e9, ET).date()
        pre, open_ns, close_ns, post = _bounds(date)
        if ts < open_ns:
            return date, "pre", pre, open_ns
        if ts < close_ns:
            return date, "rth", open_ns, close_ns
        return date, "post", close_ns, post

    def at(self, t: int) -> dict[str, Any]:
        date, phase, start, _ = self.session_of(t - 1)
        before = [(k, r) for k, r in self.events if r["ts"] < t]
        trades = [r for k, r in before if k == TRADE]
        quotes = [r for k, r in before if k == QUOTE]
        session = [r for r in trades if r["ts"] >= start and self._price_ok(r)]
        out: dict[str, Any] = {"session": phase}
        w = sum(r["size"] for r in session)
        if w:
            vwap = sum(r["price"] * r["size"] for r in session) / w
            sigma = math.sqrt(sum(r["size"] * (r["price"] - vwap) ** 2 for r in session) / w)
            out.update(vwap=vwap, sigma_upper=vwap + self.params.sigma_k * sigma, sigma_lower=vwap - 2 * sigma)
        else:
            out.update(vwap=None, sigma_upper=None, sigma_lower=None)
        # cvd: the latest quote before each trade (merge order), else the tick rule
        cvd, last_q, prev_p, direction = 0.0, None, None, 0
        for k, r in before:
            if r["ts"] < start:
                continue
            if k == QUOTE:
                last_q = r
                continue
            if not self._price_ok(r):
                continue
            p = r["price"]
            valid = last_q is not None and 0 < last_q["bid"] < last_q["ask"]
            if valid and p >= last_q["ask"]:  # type: ignore[index]
                sign = 1
            elif valid and p <= last_q["bid"]:  # type: ignore[index]
                sign = -1
            elif prev_p is None:
                sign = 0
            elif p > prev_p:
                sign = 1
            elif p < prev_p:
                sign = -1
            else:
                sign = direction
            if prev_p is not None and p != prev_p:
                direction = 1 if p > prev_p else -1
            prev_p = p
            cvd += sign * r["size"]
        out["cvd"] = cvd
        # hod/lod over today's RTH
        rth = [
            r
            for r in trades
            if self.session_of(r["ts"])[:2] == (date, "rth") and r["size"] > 0 and self._ok(r["conditions"], 0)
        ]
        out["hod"] = max((r["price"] for r in rth), default=None) if phase != "pre" else None
        out["lod"] = min((r["price"] for r in rth), default=None) if phase != "pre" else None
        # prev_close: last price-eligible RTH trade of an earlier day
        earlier = [r for r in trades if self._price_ok(r) and self.session_of(r["ts"])[1] == "rth"]
        earlier = [r for r in earlier if self.session_of(r["ts"])[0] < date]
        out["prev_close"] = earlier[-1]["price"] if earlier else None
        # EMAs over closes of the minutes before t's minute
        closes: dict[int, float] = {}
        for r in trades:
            if r["ts"] // MIN < t // MIN and self._price_ok(r):
                closes[r["ts"] // MIN] = r["price"]
        series = [closes[m] for m in sorted(closes)]
        for n in (20, 50):
            values = []
            if len(series) >= n:
                ema = sum(series[:n]) / n
                values.append(ema)
                for x in series[n:]:
                    ema = ema + 2 / (n + 1) * (x - ema)
                    values.append(ema)
            out[f"ema{n}"] = values[-1] if values else None
            if n == 20:
                out["ema20_slope"] = (values[-1] - values[-6]) / values[-6] * 1e4 / 5 if len(values) >= 6 else None
        # ob_imbalance of the latest quote
        q = quotes[-1] if quotes else None
        size = (q["bid_size"] + q["ask_size"]) if q else 0
        out["ob_imbalance"] = (q["bid_size"] - q["ask_size"]) / size if q and size else None
        # rvol: session volume / mean prior same-phase session volume through the same minute
        index = (t - start - 1) // MIN
        volume = sum(r["size"] for r in trades if r["ts"] >= start and r["size"] > 0 and self._ok(r["conditions"], 2))
        prior = []
        for other in sorted({d for d in (self.session_of(r["ts"])[0] for r in trades) if d < date}):
            odate, _, ostart, oend = None, None, 0, 0
            for r in trades:
                s = self.session_of(r["ts"])
                if s[0] == other and s[1] == phase:
                    odate, _, ostart, oend = s
                    break
            if odate is None or index < 0 or index >= (oend - ostart) // MIN:
                continue
            prior.append(
                sum(
                    r["size"]
                    for r in trades
                    if ostart <= r["ts"] < ostart + (index + 1) * MIN and r["size"] > 0 and self._ok(r["conditions"], 2)
                )
            )
        out["rvol"] = volume / (sum(prior) / len(prior)) if prior and sum(prior) > 0 else None
        return out


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, str):
        return bool(a == b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("name", sorted(TAPES))
def test_every_feature_matches_the_reference(name: str) -> None:
    params = FeatureParams(snapshot_interval_ms=60_000, lookback_days=5, warmup_days=1)  # one per bar close
    events = _events(TAPES[name], "SPY")
    snaps = _engine_snapshots(events, params)
    assert len(snaps) > 60
    reference = Reference(events, params)
    checked = 0
    for snap in snaps[:: max(1, len(snaps) // 25)] + snaps[-3:]:  # a spread of snapshots, and the last ones
        want = reference.at(snap.ts)
        for key, value in want.items():
            got = getattr(snap, key)
            assert _close(got, value), f"{name} {snap.ref} {key}: engine {got!r}, reference {value!r}"
        checked += 1
    assert checked >= 20
    sessions = {s.session for s in snaps}
    if name == "half_day":
        assert sessions >= {"rth", "post"}  # crossed the 13:00 close
        post = [s for s in snaps if s.session == "post"]
        assert all(s.hod is not None for s in post)  # the day's RTH high is kept after the close
    if name == "dst":
        opens = {}  # date -> first RTH snapshot (UTC)
        for s in snaps:
            if s.session == "rth":
                when = dt.datetime.fromtimestamp(s.ts / 1e9, dt.UTC)
                opens.setdefault(when.date(), when)
        # 09:30 ET: 13:30 UTC before the change (EDT), 14:30 UTC after it (EST); the first RTH snapshot is a
        # minute in, and the one at the open itself is premarket's last
        assert opens[dt.date(2026, 10, 30)].time() == dt.time(13, 31)
        assert opens[dt.date(2026, 11, 2)].time() == dt.time(14, 31)
        at_open = [s for s in snaps if dt.datetime.fromtimestamp(s.ts / 1e9, dt.UTC).time() == dt.time(14, 30)]
        assert [s.session for s in at_open] == ["pre"]


def test_warm_up_state_is_carried_in_each_snapshot() -> None:
    params = FeatureParams(snapshot_interval_ms=60_000, lookback_days=5, warmup_days=1)
    snaps = _engine_snapshots(_events(TAPES["ordinary"], "SPY"), params)
    first_day = [s for s in snaps if s.ts < snaps[-1].ts - 12 * 3600 * 10**9]
    assert all(s.lookback_days == 0 and not s.warm for s in first_day)  # no prior session yet
    last = snaps[-1]
    assert last.lookback_days == 1
    assert last.warm  # ema50 seeded over both windows, prev_close known, a prior session for rvol
    assert last.lookback_min == (last.ts - Reference.session_of(last.ts - 1)[2]) // MIN


def test_bad_market_data_never_divides_by_zero() -> None:
    params = FeatureParams()
    engine = SymbolFeatures("SPY", params, Calendar(), ConditionTable.load())
    t0 = int(dt.datetime(2026, 11, 18, 10, 0, tzinfo=ET).timestamp()) * 10**9
    engine.on_quote(t0, 600.0, 600.0, 0, 0)  # locked, zero sizes
    engine.on_trade(t0 + 1, 600.0, 0, [])  # zero size: ignored
    engine.on_quote(t0 + 2, 600.1, 600.0, 100, 100)  # crossed
    engine.on_trade(t0 + 3, 600.05, 100, [])  # classified by the tick rule (no valid book)
    snap = engine.on_quote(t0 + 2 * 10**9, 600.0, 600.02, 0, 0)
    assert snap is not None
    assert snap.ob_imbalance == 0.0  # sizes of the crossed quote: 100 vs 100
    assert not snap.quote_ok
    assert snap.spread_bps is None
    assert snap.vwap == 600.05
    assert snap.cvd == 0.0  # the first trade has no previous price: unclassified
    assert engine.counters.ignored_trades == 1
    later = engine.on_trade(t0 + 4 * 10**9, 600.01, 10, [])
    assert later is not None
    assert later.ob_imbalance is None  # both sizes 0: no imbalance, not a division by zero


def test_late_and_out_of_session_events_are_counted_not_applied() -> None:
    engine = SymbolFeatures("SPY", FeatureParams(), Calendar(), ConditionTable.load())
    t0 = int(dt.datetime(2026, 11, 18, 10, 0, tzinfo=ET).timestamp()) * 10**9
    engine.on_trade(t0, 600.0, 100, [])
    engine.on_trade(t0 - 1, 700.0, 100, [])  # behind the watermark
    night = int(dt.datetime(2026, 11, 18, 21, 0, tzinfo=ET).timestamp()) * 10**9
    engine.on_trade(night, 650.0, 100, [])  # after 20:00 ET
    assert engine.counters.late_events == 1
    assert engine.counters.outside_session == 1
    assert engine.hod == 600.0
