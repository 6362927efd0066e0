"""The risk module: one decision per signal, daily guardrails, and order intents for approved signals.

Every signal gets a ``risk_decisions`` record: ``approve`` or ``veto`` with every reason that applies
(not only the first), and the limits with their current values (``limits_snapshot``, JSON). Reasons:
not_promoted, outside_session, max_trades_per_day, daily_loss_limit, max_drawdown, max_open_positions,
cooldown_after_loss, max_spread, stale_data, duplicate_signal, invalid_levels.

State is account-wide and per trading day (US/Eastern): approved entries, open positions, realised R and
its drawdown, the last loss. An approved intent counts as an open position until the trade ledger reports
it closed (``on_trade_closed``) or its time stop passes in event time. After every decision and every
closed trade a ``risk_day`` record carries the day's state. An order the broker rejected (or the router
refused, or that expired unsent) gives its slot back (``on_order_refused``). Everything runs on event time.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from schemas.topics import ORDER_INTENTS, RISK_DAY, RISK_DECISIONS

from .digests import Digests
from .policy import RiskParams
from .sessions import ET, Calendar

NS = 1_000_000_000
MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Market:
    """What the risk module needs of the snapshot a signal used."""

    bid: float | None
    ask: float | None
    last_trade_ts: int | None
    last_quote_ts: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bid": self.bid,
            "ask": self.ask,
            "last_trade_ts": self.last_trade_ts,
            "last_quote_ts": self.last_quote_ts,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Market:
        return Market(data.get("bid"), data.get("ask"), data.get("last_trade_ts"), data.get("last_quote_ts"))


@dataclass
class Position:
    intent_id: str
    symbol: str
    time_stop_ts: int


@dataclass
class RiskDay:
    date: dt.date | None = None
    trades_taken: int = 0
    r_realized: float = 0.0
    peak_r: float = 0.0
    max_drawdown: float = 0.0
    last_loss_ts: int | None = None
    breach_flags: set[str] = field(default_factory=set)
    recent: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (symbol, setup, side) -> ts
    seen: set[str] = field(default_factory=set)  # signal ids decided today
    closed: set[str] = field(default_factory=set)  # intent ids whose closed trade was applied today
    updates: int = 0  # risk_day records published today: each one's seq (states saved before it read 0)


def _cents(x: float, down: bool) -> float:
    return (math.floor if down else math.ceil)(round(x * 100, 6)) / 100


def bracket_levels(entry: float | None, long: bool, p: RiskParams) -> tuple[float, float, float] | None:
    """(stop, take-profit, risk per share) for an entry at ``entry``: the stop ``stop_bps`` away (whole
    cents, away from the entry), the take-profit ``take_profit_r`` R away (whole cents, towards the entry);
    None when they make no valid bracket. Shared by the risk module and the label rules."""
    if entry is None or entry <= 0:
        return None
    distance = entry * p.stop_bps / 1e4
    stop = _cents(entry - distance, down=True) if long else _cents(entry + distance, down=False)
    risk_per_share = round(abs(entry - stop), 6)
    if risk_per_share <= 0 or stop <= 0:
        return None
    take = entry + p.take_profit_r * risk_per_share if long else entry - p.take_profit_r * risk_per_share
    take = _cents(take, down=not long)
    if take <= 0:
        return None
    return stop, take, risk_per_share


class RiskEngine:
    def __init__(self, params: RiskParams, calendar: Calendar, digests: Digests) -> None:
        self.params = params
        self.calendar = calendar
        self.digests = digests
        self.day = RiskDay()
        self.open: dict[str, Position] = {}

    # --- inputs ----------------------------------------------------------------------------------

    def on_signal(self, signal: dict[str, Any], market: Market) -> list[tuple[str, dict[str, Any]]]:
        """(topic, record) outputs for one signal: risk_decisions, order_intents when approved, risk_day."""
        ts = signal["ts"]
        self._roll(ts)
        self._expire(ts)
        p, day = self.params, self.day
        reasons: list[str] = []
        if signal["status"] != "promoted":
            reasons.append("not_promoted")
        where = self.calendar.at(ts)
        if where is None or where[1] not in p.sessions:
            reasons.append("outside_session")
        if day.trades_taken >= p.max_trades_per_day:
            reasons.append("max_trades_per_day")
        if day.r_realized <= -p.daily_loss_limit_r:
            reasons.append("daily_loss_limit")
        if day.max_drawdown >= p.max_drawdown_r:
            reasons.append("max_drawdown")
        if len(self.open) >= p.max_open_positions:
            reasons.append("max_open_positions")
        if day.last_loss_ts is not None and ts - day.last_loss_ts < p.cooldown_after_loss_min * 60 * NS:
            reasons.append("cooldown_after_loss")
        bid, ask = market.bid, market.ask
        valid_book = bid is not None and ask is not None and 0 < bid < ask
        if not valid_book or (ask - bid) / ((ask + bid) / 2) * 1e4 > p.max_spread_bps:  # type: ignore[operator]
            reasons.append("max_spread")
        stale = p.stale_ms * MS
        if any(t is None or ts - t > stale for t in (market.last_trade_ts, market.last_quote_ts)):
            reasons.append("stale_data")
        key = (signal["symbol"], signal["setup"], signal["side"])
        last = day.recent.get(key)
        if signal["id"] in day.seen or (last is not None and ts - last < p.duplicate_window_s * NS):
            reasons.append("duplicate_signal")
        intent = self._intent(signal, market) if valid_book else None
        if valid_book and intent is None:
            reasons.append("invalid_levels")
        if signal["status"] == "promoted":
            day.recent[key] = ts
        day.seen.add(signal["id"])
        approved = not reasons
        limits = self._limits()
        out: list[tuple[str, dict[str, Any]]] = [
            (
                RISK_DECISIONS,
                {
                    "signal_id": signal["id"],
                    "ts": ts,
                    "symbol": signal["symbol"],
                    "decision": "approve" if approved else "veto",
                    "veto_reasons": reasons,
                    "limits_snapshot": json.dumps(limits, sort_keys=True, separators=(",", ":")),
                    "session_policy_digest": self.digests.session_policy_digest,
                },
            )
        ]
        if approved and intent is not None:
            day.trades_taken += 1
            self.open[intent["id"]] = Position(intent["id"], intent["symbol"], intent["time_stop_ts"])
            if day.trades_taken >= p.max_trades_per_day:
                day.breach_flags.add("max_trades")
            out.append((ORDER_INTENTS, intent))
        out.append((RISK_DAY, self._day_update(ts)))
        return out

    def on_trade_closed(self, ledger: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """A ``trade_ledger`` record: realised R, drawdown, the last loss, and the position closed."""
        ts = ledger["ts"]
        self._roll(ts)
        day, p = self.day, self.params
        intent = ledger.get("intent_id") or ""
        if intent and intent in day.closed:
            return []  # the same closed trade again (a re-delivered ledger record): applied once
        if intent:
            day.closed.add(intent)
        r = float(ledger["r_multiple"])
        day.r_realized += r
        day.peak_r = max(day.peak_r, day.r_realized)
        day.max_drawdown = max(day.max_drawdown, day.peak_r - day.r_realized)
        if r < 0:
            day.last_loss_ts = ts
        self.open.pop(intent, None)
        if day.r_realized <= -p.daily_loss_limit_r:
            day.breach_flags.add("daily_loss")
        if day.max_drawdown >= p.max_drawdown_r:
            day.breach_flags.add("max_drawdown")
        return [(RISK_DAY, self._day_update(ts))]

    def on_order_refused(self, order: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """An ``orders`` record for an entry that can never fill (status ``rejected`` by the broker,
        ``refused`` by the router before sending, ``expired`` unsent): its position is released and it no
        longer counts as a trade taken. Other statuses change nothing here (fills reach risk through the
        trade ledger)."""
        if order.get("status") not in ("rejected", "refused", "expired") or order.get("intent_id") not in self.open:
            return []
        ts = order["ts"]
        self._roll(ts)
        del self.open[order["intent_id"]]
        self.day.trades_taken = max(0, self.day.trades_taken - 1)
        if self.day.trades_taken < self.params.max_trades_per_day:
            self.day.breach_flags.discard("max_trades")
        return [(RISK_DAY, self._day_update(ts))]

    # --- state -----------------------------------------------------------------------------------

    def export_state(self) -> bytes:
        from . import statecodec

        return statecodec.encode({"day": self.day, "open": self.open})

    def import_state(self, data: bytes, legacy: bool = False) -> None:
        """Restore from :meth:`export_state`'s record (StateError when it is not ours to load; ``legacy``:
        the old pickled form is accepted, to migrate it once)."""
        from . import statecodec

        state = statecodec.decode(data, legacy=legacy)
        if type(state) is tuple and len(state) == 2:  # the old pickled form: (day, open)
            state = {"day": state[0], "open": state[1]}
        day, open_ = (state.get("day"), state.get("open")) if type(state) is dict else (None, None)
        if type(day) is not RiskDay or type(open_) is not dict or any(type(p) is not Position for p in open_.values()):
            raise statecodec.StateError("risk state record is not a risk engine's state")
        self.day, self.open = day, open_
        if not hasattr(self.day, "closed"):  # state saved before closed trades were de-duplicated
            self.day.closed = set()

    def _roll(self, ts: int) -> None:
        date = dt.datetime.fromtimestamp(ts / NS, ET).date()
        if self.day.date != date:
            self.day = RiskDay(date=date)
            self.open.clear()  # intraday: nothing is carried over a night

    def _expire(self, ts: int) -> None:
        for intent_id in [k for k, pos in self.open.items() if ts >= pos.time_stop_ts]:
            del self.open[intent_id]

    def _limits(self) -> dict[str, Any]:
        p, day = self.params, self.day
        return {
            "max_trades_per_day": p.max_trades_per_day,
            "trades_taken": day.trades_taken,
            "daily_loss_limit_r": p.daily_loss_limit_r,
            "r_realized": round(day.r_realized, 6),
            "max_drawdown_r": p.max_drawdown_r,
            "max_drawdown": round(day.max_drawdown, 6),
            "max_open_positions": p.max_open_positions,
            "open_positions": len(self.open),
            "cooldown_after_loss_min": p.cooldown_after_loss_min,
            "last_loss_ts": day.last_loss_ts,
            "max_spread_bps": p.max_spread_bps,
            "stale_ms": p.stale_ms,
        }

    def _day_update(self, ts: int) -> dict[str, Any]:
        """The next ``risk_day`` record: the day's update number goes up by one."""
        self.day.updates += 1
        return self.risk_day(ts)

    def risk_day(self, ts: int) -> dict[str, Any]:
        """The day's state as a ``risk_day`` record; ``seq`` numbers the day's updates (1, 2, ...), so two
        updates with the same event time are two rows, and the highest is the state now."""
        day = self.day
        return {
            "ts_date": day.date,
            "ts": ts,
            "seq": day.updates,
            "trades_taken": day.trades_taken,
            "open_positions": len(self.open),
            "r_realized": round(day.r_realized, 6),
            "max_drawdown": round(day.max_drawdown, 6),
            "breach_flags": sorted(day.breach_flags),
        }

    def _intent(self, signal: dict[str, Any], market: Market) -> dict[str, Any] | None:
        """Entry at the touch (ask for a long, bid for a short), stop stop_bps away, take-profit at
        take_profit_r, qty from 1R; None when the levels do not make a valid order."""
        p = self.params
        long = signal["side"] == "long"
        entry = market.ask if long else market.bid
        levels = bracket_levels(entry, long, p)
        if levels is None or entry is None:
            return None
        stop, take, risk_per_share = levels
        qty = math.floor(p.risk_per_trade_usd / risk_per_share)
        if qty < 1:
            return None
        return {
            "id": f"oi-{signal['id']}",
            "signal_id": signal["id"],
            "ts": signal["ts"],
            "symbol": signal["symbol"],
            "instrument": "equity",
            "option_symbol": None,
            "side": "buy" if long else "sell_short",
            "qty": qty,
            "entry_type": "limit",
            "entry_limit": entry,
            "take_profit": take,
            "stop_loss": stop,
            "time_stop_ts": signal["ts"] + int(p.time_stop_min * 60 * NS),
            "risk_per_share": risk_per_share,
            "reference_price": signal.get("reference_price"),
        }
