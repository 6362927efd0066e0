"""A deterministic synthetic trading session with realistic microstructure.

Per symbol, a minute-level plan (mid-price path with trending regimes and reversals, a U-shaped
activity curve, event counts and sequence-number bases) is drawn first; each minute's events are then
drawn from their own seeded generator, so any window can be produced without generating what came
before, and the same (seed, date, symbol) always gives the same events.

Microstructure: NBBO quotes several times more frequent than trades; spreads of one cent most of the
time (wider outside RTH); trades at the touch (aggressive), at the midpoint (TRF, exchange 4) or
inside; odd lots (condition 37), intermarket sweeps (14) and Form T (12) outside RTH; per-ticker
increasing, non-contiguous sequence numbers shared by trades and quotes; minute bars built from the
trades with Polygon's condition rules (config/trade_conditions.yaml).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from scalp_config import default

from kafkaio.errors import ConfigError

from .wire import MS, to_rest, to_ws

ET = ZoneInfo("America/New_York")
MINUTE_NS = 60_000_000_000
CONDITIONS_FILE = default("trade_conditions.yaml")  # packaged with scalp (scalp_config)
BASE = {"SPY": (600.0, 2), "QQQ": (520.0, 3), "IWM": (230.0, 2), "DIA": (440.0, 2)}
QUOTE_EXCHANGES = (8, 10, 11, 12, 15, 17, 19, 21)
TRADE_EXCHANGES = (4, 4, 4, 10, 11, 12, 12, 15, 19, 21)
QUOTES_PER_MIN = 720  # at activity 1.0
TRADES_PER_MIN = 180
BURST = 10.0  # activity multiple of a burst minute


@cache
def condition_rules() -> dict[int, tuple[bool, bool, bool]]:
    """code -> (updates_high_low, updates_last, updates_volume)."""
    data = yaml.safe_load(CONDITIONS_FILE.read_text())["conditions"]
    return {int(k): (v["updates_high_low"], v["updates_last"], v["updates_volume"]) for k, v in data.items()}


def _ns(day: dt.date, hhmm: str) -> int:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ET).timestamp()) * 1_000_000_000


@dataclass(frozen=True)
class SessionTimes:
    date: dt.date
    pre_open_ns: int
    open_ns: int
    close_ns: int
    post_close_ns: int
    start_ns: int
    end_ns: int
    half_day: bool

    def phase(self, ts_ns: int) -> str:
        if ts_ns < self.open_ns:
            return "pre"
        return "rth" if ts_ns < self.close_ns else "post"


def session_times(day: dt.date, start: str | None = None, end: str | None = None) -> SessionTimes:
    """NYSE session of ``day`` (half days included); ``start``/``end`` (HH:MM US/Eastern) narrow it."""
    import exchange_calendars as xcals

    calendar = xcals.get_calendar("XNYS")
    if not calendar.is_session(day.isoformat()):
        raise ConfigError(f"{day} is not an NYSE trading day")
    open_ns = int(calendar.session_open(day.isoformat()).value)
    close_ns = int(calendar.session_close(day.isoformat()).value)
    half_day = close_ns - open_ns < 6 * 3600 * 1_000_000_000
    pre_open = _ns(day, "04:00")
    post_close = close_ns + 4 * 3600 * 1_000_000_000  # extended hours end 4 h after the close
    start_ns = _ns(day, start) if start else pre_open
    end_ns = _ns(day, end) if end else post_close
    start_ns, end_ns = max(start_ns, pre_open), min(end_ns, post_close)
    if end_ns <= start_ns:
        raise ConfigError(f"empty window {start}-{end} on {day}")
    return SessionTimes(day, pre_open, open_ns, close_ns, post_close, start_ns, end_ns, half_day)


@dataclass
class SymbolPlan:
    symbol: str
    tape: int
    mid: list[float]  # mid at each minute boundary (len = minutes + 1)
    drift: list[float]  # bps per minute, per minute
    activity: list[float]
    n_quotes: list[int]
    n_trades: list[int]
    seq_base: list[int]
    prev_close: float


class Session:
    """One synthetic session for ``symbols`` on ``day``; everything derives from ``seed``."""

    def __init__(
        self,
        day: dt.date,
        symbols: list[str],
        seed: int,
        start: str | None = None,
        end: str | None = None,
        bursts: int = 0,
    ) -> None:
        """``bursts``: minutes of the window (drawn from the seed, regular hours first) in which the whole
        market trades ten times as actively (news); 0 leaves the session as it always was."""
        self.times = session_times(day, start, end)
        self.symbols = sorted(s.upper() for s in symbols)
        self.seed = seed
        self.minutes = (self.times.post_close_ns - self.times.pre_open_ns) // MINUTE_NS
        self.bursts = self._burst_minutes(bursts)
        self.plans = {s: self._plan(s) for s in self.symbols}
        self._cache: OrderedDict[tuple[str, int], list[dict[str, Any]]] = OrderedDict()

    # --- plan ------------------------------------------------------------------------------------

    def _rng(self, *parts: object) -> random.Random:
        return random.Random("|".join(str(p) for p in (self.seed, self.times.date, *parts)))

    def _burst_minutes(self, count: int) -> frozenset[int]:
        if count <= 0:
            return frozenset()
        window = list(self.minute_range(self.times.start_ns, self.times.end_ns))
        regular = [m for m in window if self.times.phase(self.times.pre_open_ns + m * MINUTE_NS) == "rth"]
        pool = regular if len(regular) >= count else window
        return frozenset(self._rng("bursts").sample(pool, min(count, len(pool))))

    def _activity(self, minute: int) -> float:
        if minute in self.bursts:
            return BURST * self._base_activity(minute)
        return self._base_activity(minute)

    def _base_activity(self, minute: int) -> float:
        t = self.times.pre_open_ns + minute * MINUTE_NS
        if t < self.times.open_ns:
            return 0.06
        if t >= self.times.close_ns:
            return 0.05 if t - self.times.close_ns > 15 * MINUTE_NS else 0.3
        x = (t - self.times.open_ns) / (self.times.close_ns - self.times.open_ns)
        return 0.45 + 2.2 * (1 - x) ** 4 + 1.2 * x**4

    def _plan(self, symbol: str) -> SymbolPlan:
        rng = self._rng(symbol, "plan")
        base, tape = BASE.get(symbol, (20 + (sum(map(ord, symbol)) * 37) % 480, 3))
        prev_close = round(base * (1 + rng.gauss(0, 0.01)), 2)
        mid = [prev_close * (1 + rng.gauss(0, 0.002))]
        drift: list[float] = []
        activity: list[float] = []
        n_quotes: list[int] = []
        n_trades: list[int] = []
        seq_base: list[int] = []
        regime = rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 2.0)
        seq = 1_000 + rng.randrange(1_000)
        for minute in range(self.minutes):
            act = self._activity(minute)
            if rng.random() < 0.045:  # regime switch; most switches reverse the trend
                sign = -1.0 if rng.random() < 0.65 else 1.0
                regime = math.copysign(rng.uniform(0.3, 2.5), regime * sign)
            sigma = 3.0 * math.sqrt(act) + 0.5
            step = regime + rng.gauss(0, sigma) - 0.02 * (mid[-1] / prev_close - 1) * 1e4
            mid.append(mid[-1] * (1 + step / 1e4))
            drift.append(regime)
            activity.append(act)
            nq = max(1, round(rng.gauss(QUOTES_PER_MIN * act, math.sqrt(QUOTES_PER_MIN * act))))
            nt = max(0, round(rng.gauss(TRADES_PER_MIN * act, math.sqrt(TRADES_PER_MIN * act))))
            n_quotes.append(nq)
            n_trades.append(nt)
            seq_base.append(seq)
            seq += 3 * (nq + nt) + 1
        return SymbolPlan(symbol, tape, mid, drift, activity, n_quotes, n_trades, seq_base, prev_close)

    def minute_range(self, from_ns: int, to_ns: int) -> range:
        """Minutes of the generated window overlapping [from_ns, to_ns]."""
        lo = max(from_ns, self.times.start_ns)
        hi = min(to_ns, self.times.end_ns - 1)
        if hi < lo:
            return range(0)
        first = (lo - self.times.pre_open_ns) // MINUTE_NS
        last = (hi - self.times.pre_open_ns) // MINUTE_NS
        return range(max(0, first), min(self.minutes - 1, last) + 1)

    # --- events ----------------------------------------------------------------------------------

    def minute_events(self, symbol: str, minute: int) -> list[dict[str, Any]]:
        """Trades and quotes of one minute, in time order. Each has 'kind' ('T' or 'Q') and 'ns'."""
        key = (symbol, minute)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        events = self._draw_minute(self.plans[symbol], minute)
        self._cache[key] = events
        if len(self._cache) > 256:
            self._cache.popitem(last=False)
        return events

    def _draw_minute(self, plan: SymbolPlan, minute: int) -> list[dict[str, Any]]:
        rng = self._rng(plan.symbol, minute)
        start = self.times.pre_open_ns + minute * MINUTE_NS
        nq, nt = plan.n_quotes[minute], plan.n_trades[minute]
        kinds = ["Q"] * nq + ["T"] * nt
        rng.shuffle(kinds)
        kinds[0] = "Q"  # a minute opens with a quote so trades always have an NBBO
        times = sorted(rng.randrange(MINUTE_NS) for _ in kinds)
        m0, m1 = plan.mid[minute], plan.mid[minute + 1]
        n = len(kinds)
        walk = [0.0]
        for _ in range(n):
            walk.append(walk[-1] + rng.gauss(0, 0.6))
        extended = self.times.phase(start) != "rth"
        drift = plan.drift[minute]
        seq = plan.seq_base[minute]
        bid = ask = 0.0
        bid_size = ask_size = 100
        out: list[dict[str, Any]] = []
        for i, (kind, offset) in enumerate(zip(kinds, times, strict=True)):
            frac = (i + 1) / n
            bridge = (walk[i + 1] - frac * walk[n]) / 1e4  # Brownian bridge, in price fraction
            mid = (m0 + (m1 - m0) * frac) * (1 + bridge)
            seq += rng.randint(1, 3)
            ns = start + offset
            if kind == "Q" or bid == 0.0:
                ticks = rng.choices((1, 2, 3), (85, 12, 3))[0] if not extended else rng.randint(1, 6)
                bid = math.floor(mid * 100 - ticks / 2) / 100
                ask = round(bid + ticks / 100, 2)
                bid = round(bid, 2)
                tilt = 1.6 if drift > 0 else 0.7
                bid_size = 100 * max(1, round(rng.randint(1, 40) * tilt))
                ask_size = 100 * max(1, round(rng.randint(1, 40) / tilt))
                if kind == "Q":
                    out.append(
                        {
                            "kind": "Q",
                            "ns": ns,
                            "sym": plan.symbol,
                            "bx": rng.choice(QUOTE_EXCHANGES),
                            "bp": bid,
                            "bs": bid_size,
                            "ax": rng.choice(QUOTE_EXCHANGES),
                            "ap": ask,
                            "as": ask_size,
                            "c": [],
                            "q": seq,
                            "z": plan.tape,
                        }
                    )
                    continue
            buy = rng.random() < 0.5 + max(-0.2, min(0.2, drift / 8))
            style = rng.random()
            exchange = rng.choice(TRADE_EXCHANGES)
            if style < 0.15:
                price, exchange = round((bid + ask) / 2, 4), 4
            elif style < 0.25 and ask - bid > 0.011:
                price = round(ask - 0.01 if buy else bid + 0.01, 2)
            else:
                price = ask if buy else bid
            conditions: list[int] = []
            if rng.random() < 0.15:
                size = rng.randint(1, 99)
                conditions.append(37)
            else:
                size = 100 * min(50, int(rng.expovariate(0.5)) + 1)
                if size >= 1000 and rng.random() < 0.3:
                    conditions.append(14)
            if extended:
                conditions.insert(0, 12)
            out.append(
                {
                    "kind": "T",
                    "ns": ns,
                    "sym": plan.symbol,
                    "i": str(seq),
                    "x": exchange,
                    "p": price,
                    "s": size,
                    "c": conditions,
                    "q": seq,
                    "z": plan.tape,
                    "pns": ns - rng.randint(50_000, 900_000),
                }
            )
        return out

    def minute_bar(self, symbol: str, minute: int) -> dict[str, Any] | None:
        """Polygon-style minute aggregate of the minute's trades, or None without eligible trades."""
        rules = condition_rules()
        o = h = low = c = None
        volume = 0
        notional = 0.0
        count = 0
        for ev in self.minute_events(symbol, minute):
            if ev["kind"] != "T":
                continue
            hl = last = vol = True
            for code in ev["c"]:
                rule = rules.get(code)
                if rule is not None:
                    hl, last, vol = hl and rule[0], last and rule[1], vol and rule[2]
            price = ev["p"]
            if vol:
                volume += ev["s"]
                notional += price * ev["s"]
                count += 1
            if hl:
                h = price if h is None else max(h, price)
                low = price if low is None else min(low, price)
            if last:
                o = price if o is None else o
                c = price
        if o is None or h is None or low is None or c is None:
            return None
        start_ms = (self.times.pre_open_ns + minute * MINUTE_NS) // MS
        return {
            "sym": symbol,
            "s": start_ms,
            "e": start_ms + 60_000,
            "o": o,
            "h": h,
            "l": low,
            "c": c,
            "v": volume,
            "vw": round(notional / volume, 4) if volume else None,
            "n": count,
        }

    def stream(self) -> Iterator[dict[str, Any]]:
        """Every event of the window as Polygon WebSocket events (T, Q, AM), in time order."""
        day_volume = dict.fromkeys(self.symbols, 0)
        day_notional = dict.fromkeys(self.symbols, 0.0)
        day_open: dict[str, float] = {}
        for minute in self.minute_range(self.times.start_ns, self.times.end_ns):
            batch: list[tuple[int, int, str, dict[str, Any]]] = []
            for symbol in self.symbols:
                for ev in self.minute_events(symbol, minute):
                    if self.times.start_ns <= ev["ns"] < self.times.end_ns:
                        batch.append((ev["ns"], ev["q"], symbol, ev))
            batch.sort(key=lambda item: (item[0], item[2], item[1]))
            for _, _, _, ev in batch:
                yield to_ws(ev)
            for symbol in self.symbols:
                bar = self.minute_bar(symbol, minute)
                if bar is None:
                    continue
                day_volume[symbol] += bar["v"]
                day_notional[symbol] += (bar["vw"] or bar["c"]) * bar["v"]
                day_open.setdefault(symbol, bar["o"])
                yield {
                    "ev": "AM",
                    "sym": symbol,
                    "v": bar["v"],
                    "av": day_volume[symbol],
                    "op": day_open[symbol],
                    "vw": bar["vw"],
                    "o": bar["o"],
                    "c": bar["c"],
                    "h": bar["h"],
                    "l": bar["l"],
                    "a": round(day_notional[symbol] / day_volume[symbol], 4) if day_volume[symbol] else None,
                    "z": bar["v"] // max(1, bar["n"]),
                    "s": bar["s"],
                    "e": bar["e"],
                }

    def iter_rest_events(self, symbol: str, kind: str, gte_ns: int, lte_ns: int) -> Iterator[dict[str, Any]]:
        """Trades ('T') or quotes ('Q') with gte_ns <= ns <= lte_ns, as REST rows, oldest first (lazily)."""
        for minute in self.minute_range(gte_ns, lte_ns):
            for ev in self.minute_events(symbol, minute):
                if (
                    ev["kind"] == kind
                    and gte_ns <= ev["ns"] <= lte_ns
                    and self.times.start_ns <= ev["ns"] < self.times.end_ns
                ):
                    yield to_rest(ev)

    def rest_bars(self, symbol: str, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        out = []
        for minute in self.minute_range(from_ms * MS, to_ms * MS + 59_999 * MS):
            bar = self.minute_bar(symbol, minute)
            if bar is not None and from_ms <= bar["s"] <= to_ms:
                out.append(
                    {
                        "t": bar["s"],
                        "o": bar["o"],
                        "h": bar["h"],
                        "l": bar["l"],
                        "c": bar["c"],
                        "v": bar["v"],
                        "vw": bar["vw"],
                        "n": bar["n"],
                    }
                )
        return out

    def mid_at(self, symbol: str, ts_ns: int) -> float:
        plan = self.plans[symbol]
        pos = (ts_ns - self.times.pre_open_ns) / MINUTE_NS
        pos = min(max(pos, 0.0), float(self.minutes))
        i = min(int(pos), self.minutes - 1)
        return plan.mid[i] + (plan.mid[i + 1] - plan.mid[i]) * (pos - i)
