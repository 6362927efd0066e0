"""Setups as explicit state machines over feature snapshots, with filters and a score.

Each setup classifies a snapshot into an *observation* (a name), then looks up ``(state, observation)`` in
its ``TRANSITIONS`` table: the entry gives the next state and, for the transitions that yield a candidate,
the side. Pairs not in the table keep the state. The tables are data, so tests walk them directly.
Every machine passes through ``cooldown`` after a candidate and leaves it when ``cooldown_s`` of event time
has passed (observation ``cooled``).

A candidate is checked against its filters (policy ``filters`` merged with the setup's overrides):
session, no_trade_open, no_trade_close, min_rvol, max_spread, imbalance, stale_data, warm. It becomes a
``signals`` record with status ``blocked`` (a filter blocked), ``promoted`` (all passed and score >=
promote_score; the risk module acts on it) or ``generated`` (all passed, score below the bar).
"""

from __future__ import annotations

import abc
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .digests import Digests
from .features import Snapshot
from .policy import Filters, SessionPolicy, SetupParams

NS = 1_000_000_000
LONG, SHORT = "long", "short"
Transition = tuple[str, str | None]  # (next state, side of the candidate or None)


@dataclass
class Memory:
    """Per symbol and setup: the machine's state and what its observations need."""

    state: str
    until: int = 0  # cooldown end (event time)
    extreme_bps: float = 0.0  # vwap_reclaim: furthest excursion while armed
    prev_hod: float | None = None
    prev_lod: float | None = None
    window: deque[tuple[float, float]] = field(default_factory=deque)  # sigma_reversion: (price, cvd)


@dataclass(frozen=True, slots=True)
class Candidate:
    setup: str
    side: str
    state: str
    strength: float  # 0..1, setup-specific


def _bps(a: float, b: float) -> float:
    return (a - b) / b * 1e4


class Setup(abc.ABC):
    name: ClassVar[str]
    STATES: ClassVar[tuple[str, ...]]
    INITIAL: ClassVar[str]
    TRANSITIONS: ClassVar[dict[tuple[str, str], Transition]]

    def __init__(self, params: SetupParams) -> None:
        self.params = params

    def memory(self) -> Memory:
        return Memory(self.INITIAL)

    @abc.abstractmethod
    def observe(self, snap: Snapshot, mem: Memory) -> str:
        """The observation name of ``snap`` for this machine (a key of TRANSITIONS with the state)."""

    def strength(self, snap: Snapshot, mem: Memory, side: str) -> float:
        return 0.5

    def remember(self, snap: Snapshot, mem: Memory) -> None:  # noqa: B027 - an optional hook
        """Update the memory after the transition (default: nothing)."""

    def step(self, snap: Snapshot, mem: Memory) -> Candidate | None:
        if mem.state == "cooldown":
            observation = "cooled" if snap.ts >= mem.until else "wait"
        else:
            observation = self.observe(snap, mem)
        nxt, side = self.TRANSITIONS.get((mem.state, observation), (mem.state, None))
        candidate = None
        if side is not None:
            candidate = Candidate(self.name, side, nxt, self.strength(snap, mem, side))
            mem.until = snap.ts + self.params.cooldown_s * NS
        mem.state = nxt
        self.remember(snap, mem)
        return candidate


class VwapReclaim(Setup):
    """Price stretched at least arm_bps below vwap, then back above it by trigger_bps: long (reclaim);
    the mirror image: short (reject)."""

    name = "vwap_reclaim"
    STATES = ("flat", "below", "above", "cooldown")
    INITIAL = "flat"
    TRANSITIONS: ClassVar[dict[tuple[str, str], Transition]] = {
        ("flat", "far_below"): ("below", None),
        ("flat", "far_above"): ("above", None),
        ("below", "above"): ("cooldown", LONG),
        ("below", "far_above"): ("cooldown", LONG),
        ("above", "below"): ("cooldown", SHORT),
        ("above", "far_below"): ("cooldown", SHORT),
        ("cooldown", "cooled"): ("flat", None),
    }

    def observe(self, snap: Snapshot, mem: Memory) -> str:
        if snap.vwap is None or snap.last_price is None:
            return "none"
        d = _bps(snap.last_price, snap.vwap)
        if mem.state in ("below", "above"):
            mem.extreme_bps = max(mem.extreme_bps, abs(d))
        else:
            mem.extreme_bps = abs(d)
        p = self.params
        if d <= -p.arm_bps:
            return "far_below"
        if d >= p.arm_bps:
            return "far_above"
        if d >= p.trigger_bps:
            return "above"
        if d <= -p.trigger_bps:
            return "below"
        return "near"

    def strength(self, snap: Snapshot, mem: Memory, side: str) -> float:
        return min(1.0, mem.extreme_bps / (3 * self.params.arm_bps))


class Ema20Pullback(Setup):
    """A trend (ema20 above ema50 and rising at least min_slope), a pullback to within touch_bps of ema20,
    then price back above ema20: long; the mirror image: short."""

    name = "ema20_pullback"
    STATES = ("idle", "uptrend", "up_pullback", "downtrend", "down_pullback", "cooldown")
    INITIAL = "idle"
    TRANSITIONS: ClassVar[dict[tuple[str, str], Transition]] = {
        ("idle", "up_away"): ("uptrend", None),
        ("idle", "down_away"): ("downtrend", None),
        ("uptrend", "up_touch"): ("up_pullback", None),
        ("uptrend", "no_trend"): ("idle", None),
        ("uptrend", "down_away"): ("downtrend", None),
        ("up_pullback", "up_away"): ("cooldown", LONG),
        ("up_pullback", "up_broken"): ("idle", None),
        ("up_pullback", "no_trend"): ("idle", None),
        ("downtrend", "down_touch"): ("down_pullback", None),
        ("downtrend", "no_trend"): ("idle", None),
        ("downtrend", "up_away"): ("uptrend", None),
        ("down_pullback", "down_away"): ("cooldown", SHORT),
        ("down_pullback", "down_broken"): ("idle", None),
        ("down_pullback", "no_trend"): ("idle", None),
        ("cooldown", "cooled"): ("idle", None),
    }

    def observe(self, snap: Snapshot, mem: Memory) -> str:
        e20, e50, slope, price = snap.ema20, snap.ema50, snap.ema20_slope, snap.last_price
        if e20 is None or e50 is None or slope is None or price is None:
            return "none"
        p = self.params
        if e20 > e50 and slope >= p.min_slope_bps_per_min:
            trend = "up"
        elif e20 < e50 and slope <= -p.min_slope_bps_per_min:
            trend = "down"
        else:
            return "no_trend"
        d = _bps(price, e20)
        if abs(d) <= p.touch_bps:
            return f"{trend}_touch"
        with_trend = d > 0 if trend == "up" else d < 0
        return f"{trend}_away" if with_trend else f"{trend}_broken"

    def strength(self, snap: Snapshot, mem: Memory, side: str) -> float:
        return min(1.0, abs(snap.ema20_slope or 0.0) / (3 * max(self.params.min_slope_bps_per_min, 1e-9)))


class HodLodBreakout(Setup):
    """After min_range_minutes of RTH, a new high of day: long; a new low of day: short (rvol confirms
    through the min_rvol filter and the score)."""

    name = "hod_lod_breakout"
    STATES = ("building", "armed", "cooldown")
    INITIAL = "building"
    TRANSITIONS: ClassVar[dict[tuple[str, str], Transition]] = {
        ("building", "inside"): ("armed", None),
        ("armed", "new_high"): ("cooldown", LONG),
        ("armed", "new_low"): ("cooldown", SHORT),
        ("armed", "closed"): ("building", None),
        ("cooldown", "cooled"): ("armed", None),
    }

    def observe(self, snap: Snapshot, mem: Memory) -> str:
        if snap.session != "rth" or snap.minutes_since_open is None or snap.hod is None or snap.lod is None:
            return "closed"
        if snap.minutes_since_open < self.params.min_range_minutes:
            return "early"
        if mem.prev_hod is not None and snap.hod > mem.prev_hod:
            return "new_high"
        if mem.prev_lod is not None and snap.lod < mem.prev_lod:
            return "new_low"
        return "inside"

    def remember(self, snap: Snapshot, mem: Memory) -> None:
        if snap.session == "rth":
            mem.prev_hod, mem.prev_lod = snap.hod, snap.lod
        else:
            mem.prev_hod = mem.prev_lod = None

    def strength(self, snap: Snapshot, mem: Memory, side: str) -> float:
        return min(1.0, (snap.rvol or 0.0) / 2)


class SigmaReversion(Setup):
    """Price beyond a sigma band, then back inside with CVD diverging from price over the last cvd_lookback
    snapshots (price down but CVD up: long; price up but CVD down: short)."""

    name = "sigma_reversion"
    STATES = ("inside", "stretched_low", "stretched_high", "cooldown")
    INITIAL = "inside"
    TRANSITIONS: ClassVar[dict[tuple[str, str], Transition]] = {
        ("inside", "below_band"): ("stretched_low", None),
        ("inside", "above_band"): ("stretched_high", None),
        ("stretched_low", "inside_bull_div"): ("cooldown", LONG),
        ("stretched_low", "inside"): ("inside", None),
        ("stretched_low", "inside_bear_div"): ("inside", None),
        ("stretched_low", "above_band"): ("stretched_high", None),
        ("stretched_high", "inside_bear_div"): ("cooldown", SHORT),
        ("stretched_high", "inside"): ("inside", None),
        ("stretched_high", "inside_bull_div"): ("inside", None),
        ("stretched_high", "below_band"): ("stretched_low", None),
        ("cooldown", "cooled"): ("inside", None),
    }

    def observe(self, snap: Snapshot, mem: Memory) -> str:
        price, upper, lower = snap.last_price, snap.sigma_upper, snap.sigma_lower
        if price is None or upper is None or lower is None or upper <= lower:
            return "none"
        if price < lower:
            return "below_band"
        if price > upper:
            return "above_band"
        if len(mem.window) >= self.params.cvd_lookback:
            first_price, first_cvd = mem.window[0]
            d_price, d_cvd = price - first_price, snap.cvd - first_cvd
            if d_price < 0 < d_cvd:
                return "inside_bull_div"
            if d_price > 0 > d_cvd:
                return "inside_bear_div"
        return "inside"

    def remember(self, snap: Snapshot, mem: Memory) -> None:
        if snap.last_price is not None:
            mem.window.append((snap.last_price, snap.cvd))
            while len(mem.window) > self.params.cvd_lookback:
                mem.window.popleft()

    def strength(self, snap: Snapshot, mem: Memory, side: str) -> float:
        if not mem.window or snap.last_price is None:
            return 0.0
        first_price = mem.window[0][0]
        return min(1.0, abs(_bps(snap.last_price, first_price)) / 20)


SETUPS: dict[str, type[Setup]] = {cls.name: cls for cls in (VwapReclaim, Ema20Pullback, HodLodBreakout, SigmaReversion)}


def check_filters(snap: Snapshot, side: str, f: Filters) -> tuple[list[str], list[str]]:
    """(passed, blocked) filter names for a candidate on ``snap``."""
    passed: list[str] = []
    blocked: list[str] = []

    def check(name: str, ok: bool) -> None:
        (passed if ok else blocked).append(name)

    check("session", snap.session in f.sessions)
    since, to_close = snap.minutes_since_open, snap.minutes_to_close
    check("no_trade_open", since is None or since >= f.no_trade_open_minutes)
    check("no_trade_close", to_close is None or to_close > f.no_trade_close_minutes)
    check("min_rvol", f.min_rvol <= 0 or (snap.rvol is not None and snap.rvol >= f.min_rvol))
    spread = snap.spread_bps
    check("max_spread", spread is not None and spread <= f.max_spread_bps)
    imbalance = snap.ob_imbalance
    if imbalance is None:
        check("imbalance", f.imbalance_min <= -1)
    else:
        check("imbalance", imbalance >= f.imbalance_min if side == LONG else -imbalance >= f.imbalance_min)
    stale_ns = f.stale_ms * 1_000_000
    fresh = all(t is not None and snap.ts - t <= stale_ns for t in (snap.last_trade_ts, snap.last_quote_ts))
    check("stale_data", fresh)
    check("warm", snap.warm or not f.require_warm)
    return passed, blocked


def score(snap: Snapshot, side: str, candidate: Candidate) -> float:
    """0..1: 0.4 relative volume (capped at 1.5x), 0.3 book imbalance on the trade's side, 0.3 setup strength."""
    rvol = min((snap.rvol or 0.0) / 1.5, 1.0)
    imbalance = snap.ob_imbalance or 0.0
    aligned = (1 + (imbalance if side == LONG else -imbalance)) / 2
    return round(0.4 * rvol + 0.3 * aligned + 0.3 * candidate.strength, 6)


def signal_id(symbol: str, setup: str, side: str, ts: int, policy_digest: str) -> str:
    return hashlib.sha256(f"{symbol}|{setup}|{side}|{ts}|{policy_digest}".encode()).hexdigest()[:24]


class SetupBook:
    """All enabled setups of one symbol with their memories."""

    def __init__(self, policy: SessionPolicy, digests: Digests) -> None:
        self.policy = policy
        self.digests = digests
        self.setups = [SETUPS[name](policy.setup(name)) for name in SETUPS if policy.setup(name).enabled]
        self.filters = {s.name: policy.filters_for(s.name) for s in self.setups}
        self.memories: dict[str, dict[str, Memory]] = {}  # symbol -> setup -> memory

    def on_snapshot(self, snap: Snapshot) -> list[dict[str, Any]]:
        memories = self.memories.get(snap.symbol)
        if memories is None:
            memories = self.memories[snap.symbol] = {s.name: s.memory() for s in self.setups}
        out = []
        for setup in self.setups:
            candidate = setup.step(snap, memories[setup.name])
            if candidate is not None:
                out.append(self._signal(snap, candidate))
        return out

    def _signal(self, snap: Snapshot, candidate: Candidate) -> dict[str, Any]:
        passed, blocked = check_filters(snap, candidate.side, self.filters[candidate.setup])
        value = score(snap, candidate.side, candidate)
        params = self.policy.setup(candidate.setup)
        status = "blocked" if blocked else ("promoted" if value >= params.promote_score else "generated")
        return {
            "id": signal_id(snap.symbol, candidate.setup, candidate.side, snap.ts, self.digests.session_policy_digest),
            "symbol": snap.symbol,
            "ts": snap.ts,
            "session": snap.session,
            "setup": candidate.setup,
            "side": candidate.side,
            "score": value,
            "reference_price": snap.last_price,
            "features_ref": snap.ref,
            "filters_passed": passed,
            "filters_blocked": blocked,
            "status": status,
            "state": candidate.state,
            "source_commit": self.digests.source_commit,
            "session_policy_digest": self.digests.session_policy_digest,
        }
