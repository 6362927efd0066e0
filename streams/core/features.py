"""The FeatureEngine: per-symbol features from trades and quotes in event time (definitions: docs/streams.md).

One ``SymbolFeatures`` per symbol takes trades and quotes in event-time order and emits a ``Snapshot``
whenever event time passes a multiple of ``snapshot_interval_ms`` (the snapshot carries the boundary as its
``ts`` and describes the events before it, labelled with their session: the snapshot at 16:00:00 is the
last of RTH; a silent stretch yields one snapshot at the latest boundary passed; a session's start is not
a snapshot of its own, it has no events yet). Every minute boundary is a snapshot boundary, so each bar
close has its snapshot.

Rules, where the definitions leave room:
- session = pre, rth or post of the NYSE calendar; vwap, sigma, cvd and session volume reset at each
  session start. hod/lod are the day's RTH values (null before the open, kept after the close).
- trade eligibility follows the condition table (conditions.py); a trade with size or price <= 0 is ignored.
- sigma: sqrt of the volume-weighted variance of price about vwap (weighted Welford update, stable).
- cvd classification uses the latest NBBO before the trade when it is valid (bid > 0, ask > bid): buy at or
  above the ask, sell at or below the bid; otherwise (inside the spread, or a crossed/locked/empty book)
  the tick rule against the previous eligible price (an unchanged price repeats the previous direction).
- minute bars: the last price-eligible trade of each minute is its close; minutes without one have no bar.
  ema20/ema50 run over all sessions' closes (so prior sessions warm them), seeded with the SMA of the first n.
  ema20_slope = (ema20 now - ema20 five bars ago) / ema20 five bars ago * 1e4 / 5 (bps per minute).
- rvol at time t = session volume so far / mean of the prior sessions' (same phase, at most lookback_days)
  cumulative volume through the minute that ends at or after t (at a bar close: exactly the same span);
  null at the session start and without such a session.
- prev_close: the previous trading day's last price-eligible RTH trade.
- late events: an event older than the symbol's watermark (the newest event time applied) is not applied
  and is counted in ``late_events``; events outside every session are counted in ``outside_session``.
- ob_imbalance is null when both sizes are 0; a crossed or locked quote is kept (bid/ask as given) and
  marked ``quote_ok = False``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .conditions import ConditionTable
from .digests import Digests
from .policy import FeatureParams
from .sessions import ET, Calendar, SessionDay

MINUTE_NS = 60_000_000_000
MS = 1_000_000
# the Snapshot fields a features record carries (the rest: Snapshot.from_record derives them)
_TOPIC_FIELDS = (
    "symbol", "ts", "session", "vwap", "sigma_upper", "sigma_lower", "ema20", "ema50", "ema20_slope", "rvol", "hod",
    "lod", "prev_close", "cvd", "ob_imbalance", "last_price", "bid", "ask", "lookback_min", "lookback_days", "warm",
    "last_trade_ts", "last_quote_ts",
)  # fmt: skip


def spread_bps(bid: float | None, ask: float | None) -> float | None:
    """Quoted spread in bps of the mid; None unless 0 < bid < ask (a usable quote)."""
    if bid is None or ask is None or not 0 < bid < ask:
        return None
    return (ask - bid) / ((ask + bid) / 2) * 1e4


@dataclass(slots=True)
class Snapshot:
    symbol: str
    ts: int
    session: str
    vwap: float | None
    sigma_upper: float | None
    sigma_lower: float | None
    ema20: float | None
    ema50: float | None
    ema20_slope: float | None
    rvol: float | None
    hod: float | None
    lod: float | None
    prev_close: float | None
    cvd: float
    ob_imbalance: float | None
    last_price: float | None
    bid: float | None
    ask: float | None
    lookback_min: int
    lookback_days: int
    warm: bool
    # not in the topic; for filters
    last_trade_ts: int | None = None
    last_quote_ts: int | None = None
    quote_ok: bool = False
    minutes_since_open: float | None = None  # RTH minutes elapsed (None outside RTH)
    minutes_to_close: float | None = None

    @property
    def ref(self) -> str:
        return f"{self.symbol}@{self.ts}"

    @property
    def spread_bps(self) -> float | None:
        return spread_bps(self.bid, self.ask) if self.quote_ok else None

    def record(self, digests: Digests) -> dict[str, Any]:
        """The ``features`` topic record."""
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "session": self.session,
            "vwap": self.vwap,
            "sigma_upper": self.sigma_upper,
            "sigma_lower": self.sigma_lower,
            "ema20": self.ema20,
            "ema50": self.ema50,
            "ema20_slope": self.ema20_slope,
            "rvol": self.rvol,
            "hod": self.hod,
            "lod": self.lod,
            "prev_close": self.prev_close,
            "cvd": self.cvd,
            "ob_imbalance": self.ob_imbalance,
            "last_price": self.last_price,
            "bid": self.bid,
            "ask": self.ask,
            "source_commit": digests.source_commit,
            "session_policy_digest": digests.session_policy_digest,
            "env_hash": digests.env_hash,
            "lookback_min": self.lookback_min,
            "lookback_days": self.lookback_days,
            "warm": self.warm,
            "last_trade_ts": self.last_trade_ts,
            "last_quote_ts": self.last_quote_ts,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], calendar: Calendar) -> Snapshot:
        """The snapshot a ``features`` record describes, as the setups saw it: what the topic leaves out is
        derived (quote_ok from the bid and ask, the RTH minutes from the calendar) or carried (the trade and
        quote times; a record without them cannot be replayed: ValueError)."""
        if record.get("last_trade_ts") is None and record.get("last_quote_ts") is None:
            raise ValueError(f"{record['symbol']}@{record['ts']}: no trade or quote time (written before they were)")
        ts, bid, ask = record["ts"], record.get("bid"), record.get("ask")
        since = to_close = None
        if record["session"] == "rth":
            day = calendar.day(dt.datetime.fromtimestamp(ts / 1e9, ET).date())
            if day is not None:
                since, to_close = (ts - day.open_ns) / MINUTE_NS, (day.close_ns - ts) / MINUTE_NS
        carried: dict[str, Any] = {f: record.get(f) for f in _TOPIC_FIELDS}
        return cls(
            **carried,
            quote_ok=bid is not None and ask is not None and 0 < bid < ask,
            minutes_since_open=since,
            minutes_to_close=to_close,
        )


@dataclass(slots=True)
class Ema:
    """An EMA seeded with the mean of its first ``n`` values (:meth:`over` makes one)."""

    alpha: float
    n: int
    seed: list[float] = field(default_factory=list)
    value: float | None = None

    @staticmethod
    def over(n: int) -> Ema:
        return Ema(2.0 / (n + 1), n)

    def add(self, x: float) -> None:
        if self.value is None:
            self.seed.append(x)
            if len(self.seed) == self.n:
                self.value = sum(self.seed) / self.n
                self.seed = []
        else:
            self.value += self.alpha * (x - self.value)


@dataclass
class Counters:
    late_events: int = 0
    outside_session: int = 0
    ignored_trades: int = 0  # size or price <= 0
    snapshots: int = 0


@dataclass
class SymbolFeatures:
    """Feature state of one symbol (everything needed to resume is in here: it is what Faust tables hold)."""

    symbol: str
    params: FeatureParams
    calendar: Calendar = field(repr=False)
    conditions: ConditionTable = field(repr=False)
    counters: Counters = field(default_factory=Counters)
    watermark: int = -1
    # session
    day: SessionDay | None = None
    phase: str | None = None
    session_start: int = 0
    w_sum: float = 0.0  # weighted Welford over price-eligible trades: sum of sizes, mean (= vwap), S
    mean: float = 0.0
    s_acc: float = 0.0
    cvd: float = 0.0
    volume: float = 0.0  # session volume (volume-eligible)
    cum_by_minute: list[float] = field(default_factory=list)  # session volume through minute m
    history: dict[str, deque[list[float]]] = field(default_factory=dict)  # phase -> prior sessions' cum_by_minute
    # day
    hod: float | None = None
    lod: float | None = None
    rth_close: float | None = None  # last eligible RTH price of the current day
    prev_close: float | None = None
    # prices and book
    last_price: float | None = None
    tick_price: float | None = None
    tick_dir: int = 0
    last_trade_ts: int | None = None
    bid: float | None = None
    ask: float | None = None
    bid_size: float = 0.0
    ask_size: float = 0.0
    last_quote_ts: int | None = None
    # bars and EMAs
    minute: int = -1  # minute (ts // MINUTE_NS) of the open bar
    bar_close: float | None = None
    ema20: Ema = field(default_factory=lambda: Ema.over(20))
    ema50: Ema = field(default_factory=lambda: Ema.over(50))
    ema20_hist: deque[float] = field(default_factory=lambda: deque(maxlen=6))
    next_snapshot: int = -1

    # --- events ----------------------------------------------------------------------------------

    def on_trade(self, ts: int, price: float, size: float, conditions: list[int] | None) -> Snapshot | None:
        ok, snap = self._advance(ts)
        if not ok:
            return None
        if size <= 0 or price <= 0 or not math.isfinite(price):
            self.counters.ignored_trades += 1
            return snap
        rules = self.conditions.of(conditions)
        if rules.volume:
            self.volume += size
        if rules.price:
            # cvd: quote rule with a valid book, else tick rule
            bid, ask, tick = self.bid, self.ask, self.tick_price
            book = bid is not None and ask is not None and 0 < bid < ask
            if book and price >= ask:  # type: ignore[operator]
                direction = 1
            elif book and price <= bid:  # type: ignore[operator]
                direction = -1
            elif tick is None:
                direction = 0
            elif price != tick:
                direction = 1 if price > tick else -1
            else:
                direction = self.tick_dir
            if tick is not None and price != tick:
                self.tick_dir = 1 if price > tick else -1
            self.tick_price = price
            self.cvd += direction * size
            # vwap and variance (weighted Welford)
            self.w_sum += size
            delta = price - self.mean
            self.mean += size / self.w_sum * delta
            self.s_acc += size * delta * (price - self.mean)
            self.last_price = price
            self.bar_close = price
            self.last_trade_ts = ts
            if self.phase == "rth":
                self.rth_close = price
        if rules.high_low and self.phase == "rth":
            if self.hod is None or price > self.hod:
                self.hod = price
            if self.lod is None or price < self.lod:
                self.lod = price
        return snap

    def on_quote(self, ts: int, bid: float, ask: float, bid_size: float, ask_size: float) -> Snapshot | None:
        ok, snap = self._advance(ts)
        if not ok:
            return None
        self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size
        self.last_quote_ts = ts
        return snap

    def flush(self, until_ts: int) -> Snapshot | None:
        """Advance event time to ``until_ts`` without an event (end of input): the pending snapshot, if any."""
        return self._advance(until_ts)[1]

    # --- time ------------------------------------------------------------------------------------

    def _advance(self, ts: int) -> tuple[bool, Snapshot | None]:
        """Move event time to ``ts``: close bars, roll sessions; (apply the event?, the snapshot due)."""
        if ts < self.watermark:
            self.counters.late_events += 1
            return False, None
        where = self.calendar.at(ts)
        if where is None:
            self.counters.outside_session += 1
            return False, None
        self.watermark = ts
        minute = ts // MINUTE_NS
        if minute != self.minute:
            self._close_bar(minute)
            if self.phase is not None:  # minutes of the current session completed before this one
                end = min(minute * MINUTE_NS, self.day.end_of(self.phase))  # type: ignore[union-attr]
                self._fill_minutes((end - self.session_start) // MINUTE_NS)
        day, phase = where
        roll = phase != self.phase or (day is not self.day and day != self.day)
        interval = self.params.snapshot_interval_ms * MS
        snap: Snapshot | None = None
        due = ts >= self.next_snapshot
        boundary = ts - ts % interval
        closing = roll and self.day is not None and self.phase is not None
        if due and closing and self.next_snapshot >= 0 and boundary <= self.day.end_of(self.phase):  # type: ignore[union-attr,arg-type]
            snap = self.snapshot(boundary)  # the boundary closes the old session: its last state
            due = False
        if roll:
            self._roll_session(day, phase)
            # minutes of the new session before this event's minute had no volume here
            self._fill_minutes(max(0, (minute * MINUTE_NS - self.session_start) // MINUTE_NS))
        if due and self.next_snapshot >= 0 and boundary > self.session_start:
            snap = self.snapshot(boundary)
        if ts >= self.next_snapshot:
            self.next_snapshot = boundary + interval
        return True, snap

    def _close_bar(self, minute: int) -> None:
        if self.bar_close is not None:
            self.ema20.add(self.bar_close)
            self.ema50.add(self.bar_close)
            if self.ema20.value is not None:
                self.ema20_hist.append(self.ema20.value)
        self.bar_close = None
        self.minute = minute

    def _roll_session(self, day: SessionDay, phase: str) -> None:
        if self.day is not None and self.phase is not None:
            self._fill_minutes((self.day.end_of(self.phase) - self.session_start) // MINUTE_NS)
            hist = self.history.setdefault(self.phase, deque(maxlen=self.params.lookback_days))
            hist.append(self.cum_by_minute)
        if day is not self.day:
            if self.day is not None and self.rth_close is not None:
                self.prev_close = self.rth_close
            self.hod = self.lod = self.rth_close = None
        self.day, self.phase = day, phase
        self.session_start = day.start_of(phase)
        self.w_sum = self.mean = self.s_acc = self.cvd = self.volume = 0.0
        self.cum_by_minute = []
        self.tick_price, self.tick_dir = None, 0

    def _fill_minutes(self, upto: int) -> None:
        """Record the session volume through every completed minute before ``upto``."""
        cum = self.cum_by_minute
        while len(cum) < upto:
            cum.append(self.volume)

    # --- snapshot --------------------------------------------------------------------------------

    def snapshot(self, ts: int) -> Snapshot:
        day, phase = self.day, self.phase
        if day is None or phase is None:
            raise RuntimeError(f"{self.symbol}: no snapshot before the first event")
        elapsed = (ts - self.session_start) // MINUTE_NS
        vwap = self.mean if self.w_sum > 0 else None
        upper = lower = None
        if vwap is not None:
            sigma = math.sqrt(max(self.s_acc / self.w_sum, 0.0))
            upper, lower = vwap + self.params.sigma_k * sigma, vwap - self.params.sigma_k * sigma
        hist = self.history.get(phase) or ()
        rvol = None
        index = (ts - self.session_start - 1) // MINUTE_NS  # the minute that ends at or after ts
        prior = [h[index] for h in hist if len(h) > index] if index >= 0 else []
        if prior:
            mean = sum(prior) / len(prior)
            rvol = self.volume / mean if mean > 0 else None
        slope = None
        if len(self.ema20_hist) == 6:
            old = self.ema20_hist[0]
            slope = (self.ema20_hist[-1] - old) / old * 1e4 / 5 if old else None
        size_sum = self.bid_size + self.ask_size
        imbalance = (self.bid_size - self.ask_size) / size_sum if size_sum > 0 and self.bid is not None else None
        quote_ok = self.bid is not None and self.ask is not None and 0 < self.bid < self.ask
        warm = (
            self.ema50.value is not None
            and self.prev_close is not None
            and len(hist) >= self.params.warmup_days
            and (rvol is not None or self.params.warmup_days == 0)
        )
        rth = phase == "rth"
        self.counters.snapshots += 1
        return Snapshot(
            symbol=self.symbol,
            ts=ts,
            session=phase,
            vwap=vwap,
            sigma_upper=upper,
            sigma_lower=lower,
            ema20=self.ema20.value,
            ema50=self.ema50.value,
            ema20_slope=slope,
            rvol=rvol,
            hod=self.hod,
            lod=self.lod,
            prev_close=self.prev_close,
            cvd=self.cvd,
            ob_imbalance=imbalance,
            last_price=self.last_price,
            bid=self.bid,
            ask=self.ask,
            lookback_min=int(elapsed),
            lookback_days=len(hist),
            warm=warm,
            last_trade_ts=self.last_trade_ts,
            last_quote_ts=self.last_quote_ts,
            quote_ok=quote_ok,
            minutes_since_open=(ts - day.open_ns) / MINUTE_NS if rth else None,
            minutes_to_close=(day.close_ns - ts) / MINUTE_NS if rth else None,
        )
