"""What stands between an intent and the broker: the trading state (the kill switch) and pre-trade limits.

Pure: no I/O, no clock of its own. ``now`` is the router's clock (event time for paper, the broker's clock
for Tradier). Every refusal is a reason that names the setting (or the state) that refused it, so the
``orders`` record and the audit trail say which limit stopped the order.

Trading states (NautilusTrader's ladder, made explicit about what still goes out):
- ``active``: entries and exits.
- ``reducing``: no new entry; working brackets stay (an entry that fills is still protected by its stop).
- ``halted``: no new entry, and brackets whose entry has not filled are canceled; filled positions keep their
  take-profit, stop and time stop, and exits always go out (refusing an exit would leave a position open).
``flatten`` cancels every bracket, closes every position with a market order, then halts.

Limits apply to entries only: an exit (time stop, flatten, end of day) is never refused by a limit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from kafkaio.errors import ScalpError

from .model import OrderPlan
from .settings import LimitSettings

NS = 1_000_000_000
ET = ZoneInfo("America/New_York")
OCC = re.compile(r"^(?P<root>[A-Z]{1,6})\d{6}[CP]\d{8}$")  # OCC option symbol: root, yymmdd, C/P, strike*1000


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


# command -> the state it leads to (flatten: after closing everything)
COMMANDS = {
    "resume": TradingState.ACTIVE,
    "reduce": TradingState.REDUCING,
    "halt": TradingState.HALTED,
    "flatten": TradingState.HALTED,
}
ALL_ACCOUNTS = "*"


class UnknownCommand(ScalpError, ValueError):
    """A control record whose command is not one of COMMANDS (it is dead-lettered; the state is unchanged)."""


def command_of(record: dict[str, Any]) -> str:
    command = str(record.get("command", ""))
    if command not in COMMANDS:
        raise UnknownCommand(f"unknown control command {command!r} (known: {', '.join(sorted(COMMANDS))})")
    return command


def for_account(record: dict[str, Any], account: str) -> bool:
    """Whether a control record addresses ``account`` (its own id, or every router)."""
    return record.get("account_id") in (account, ALL_ACCOUNTS)


@dataclass
class StateChange:
    """The state and what put the router in it (a control record, or the router itself)."""

    state: TradingState = TradingState.ACTIVE
    command: str | None = None
    reason: str | None = None
    ts: int | None = None
    issued_by: str | None = None

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        by = f" (by {self.issued_by})" if self.issued_by else ""
        return f"{self.state.value}{why}{by}"


def et_date(ts: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts / NS, ET).date()


@dataclass
class Guard:
    """Trading state and pre-trade limits of one account's router.

    ``eod_cutoff(now)``: the instant of the day's end-of-day flatten (the close less the configured minutes,
    half days included), or None outside a trading day or when disabled. ``before_send``: called after the
    ``sending`` record is queued and before the broker is called (the live router flushes it there; if it
    raises, nothing is sent)."""

    limits: LimitSettings
    eod_cutoff: Callable[[int], int | None] = lambda now: None
    before_send: Callable[[], None] | None = None
    change: StateChange = field(default_factory=StateChange)
    entries: dict[dt.date, set[str]] = field(default_factory=dict)  # entries sent per trading date
    submits: deque[int] = field(default_factory=deque)  # when recent entries were sent
    flattened_days: set[dt.date] = field(default_factory=set)

    @property
    def state(self) -> TradingState:
        return self.change.state

    def refusal(self, plan: OrderPlan, now: int, open_positions: int) -> str | None:
        """Why the entry ``plan`` must not be sent at ``now`` (None: it may go). Checked in this order."""
        intent = plan.intent
        lim = self.limits
        if self.state is not TradingState.ACTIVE:
            return f"trading_state: {self.change.describe()}; only exits go out"
        symbol = str(intent["symbol"])
        if lim.allowed_symbols and symbol not in lim.allowed_symbols:
            return f"allowed_symbols: {symbol} is not in {', '.join(lim.allowed_symbols)}"
        option = intent.get("option_symbol")
        if intent["instrument"] == "option":
            match = OCC.match(str(option or ""))
            if match is None or match["root"] != symbol:
                return f"allowed_symbols: {option!r} is not an OCC option symbol on {symbol}"
        age = (now - int(intent["ts"])) / NS
        if age > lim.max_intent_age_s:
            return f"max_intent_age_s: the intent is {age:.1f} s old (limit {lim.max_intent_age_s:g} s)"
        qty = plan.entry.qty
        if qty > lim.max_order_qty:
            return f"max_order_qty: {qty} above the limit of {lim.max_order_qty}"
        price = plan.entry.price or 0.0
        notional = qty * price * plan.multiplier
        if notional > lim.max_order_notional_usd:
            return f"max_order_notional_usd: {notional:,.2f} USD above the limit of {lim.max_order_notional_usd:,.2f}"
        cutoff = self.eod_cutoff(now)
        if cutoff is not None and now >= cutoff:
            return f"eod_flatten_minutes: past the end-of-day cutoff ({_et(cutoff)} ET)"
        sent_today = len(self.entries.get(et_date(now), ()))
        if sent_today >= lim.max_orders_per_day:
            return f"max_orders_per_day: {sent_today} entries sent today (limit {lim.max_orders_per_day})"
        if open_positions >= lim.max_open_positions:
            return f"max_open_positions: {open_positions} open (limit {lim.max_open_positions})"
        while self.submits and self.submits[0] <= now - NS:
            self.submits.popleft()
        if len(self.submits) >= lim.max_submits_per_s:
            n = len(self.submits)
            return f"max_submits_per_s: {n} entries sent in the last second (limit {lim.max_submits_per_s})"
        return None

    def resend_refusal(self, plan: OrderPlan, now: int) -> str | None:
        """Why an entry recorded as sending by an earlier run, and not found at the broker, must not be sent
        now: the state, or its age (it was counted against the day's limits when it was first sent)."""
        if self.state is not TradingState.ACTIVE:
            return f"trading_state: {self.change.describe()}; only exits go out"
        age = (now - int(plan.intent["ts"])) / NS
        if age > self.limits.max_intent_age_s:
            return f"max_intent_age_s: the intent is {age:.1f} s old (limit {self.limits.max_intent_age_s:g} s)"
        return None

    def sent(self, order_id: str, now: int) -> None:
        """An entry went to the broker at ``now``: it counts against the day's and the second's limits."""
        self.entries.setdefault(et_date(now), set()).add(order_id)
        self.submits.append(now)

    def restore_entry(self, order_id: str, ts: int) -> None:
        """An entry an earlier run sent (counted for its day, not for the rate)."""
        self.entries.setdefault(et_date(ts), set()).add(order_id)

    def apply(self, record: dict[str, Any]) -> str:
        """Apply a control record (addressed to this account); returns its command. Raises UnknownCommand."""
        command = command_of(record)
        self.change = StateChange(
            COMMANDS[command], command, record.get("reason"), record.get("ts"), record.get("issued_by")
        )
        return command

    def halt(self, reason: str, ts: int | None, by: str = "router") -> None:
        self.change = StateChange(TradingState.HALTED, "halt", reason, ts, by)

    def eod_due(self, now: int) -> bool:
        """Whether the end-of-day flatten is due at ``now`` and has not run today."""
        cutoff = self.eod_cutoff(now)
        if cutoff is None or now < cutoff:
            return False
        day = et_date(now)
        if day in self.flattened_days:
            return False
        self.flattened_days.add(day)
        return True


def _et(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / NS, ET).strftime("%H:%M")
