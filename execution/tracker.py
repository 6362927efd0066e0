"""Order state, fills and the trade ledger, from broker updates (pure: no I/O, no clock).

A :class:`Trade` is one intent: its bracket order and, after a time stop, a market exit order. Broker
updates carry cumulative quantities per leg, so a fill is the increase of ``exec_qty`` over what was
already seen; its id is ``<order id>-<leg>-<cumulative qty>``, which is the same whether the stream or
a poll saw it first (a fill is recorded once). Every status change of an order or a leg publishes a full
``orders`` snapshot. When the exits cover the filled entry quantity the trade is closed into
``trade_ledger`` with realised PnL after fees and its R multiple.

Slippage is signed so that positive is worse: for the entry against the signal's reference price (the
entry limit when the signal gave none), for an exit against the level that triggered it (take-profit
limit or stop price; a time-stop market exit has no reference).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from schemas.topics import FILLS, ORDERS, TRADE_LEDGER

from .model import ENTRY, EXIT, STOP_LOSS, TAKE_PROFIT, TERMINAL, LegUpdate, OrderPlan, OrderUpdate

MICRO = Decimal("0.000001")
EXIT_REASONS = {TAKE_PROFIT: "tp", STOP_LOSS: "sl", EXIT: "time"}


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    per_share_usd: float = 0.0
    per_contract_usd: float = 0.35
    per_order_usd: float = 0.0

    def fee(self, qty: int, option: bool, first_fill_of_leg: bool) -> float:
        unit = self.per_contract_usd if option else self.per_share_usd
        return qty * unit + (self.per_order_usd if first_fill_of_leg else 0.0)


@dataclass(slots=True)
class LegState:
    broker_id: str | None = None
    status: str = "pending"
    exec_qty: int = 0
    avg_price: float = 0.0


@dataclass(slots=True)
class Fill:
    id: str
    leg: int
    qty: int
    price: float
    ts: int
    fee: float


@dataclass
class Tracked:
    """One order as sent and as reported."""

    plan: OrderPlan
    broker: str
    payload: str
    preview: bool = False
    broker_order_id: str | None = None
    status: str = "pending"
    history: list[dict[str, Any]] = field(default_factory=list)
    legs: dict[int, LegState] = field(default_factory=dict)
    last_ts: int = 0
    sent_ns: int | None = None
    acked_ns: int | None = None

    def __post_init__(self) -> None:
        for leg in self.plan.legs:
            self.legs.setdefault(leg.index, LegState())

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def record(self, ts: int) -> dict[str, Any]:
        plan, entry = self.plan, self.plan.entry
        return {
            "id": plan.order_id,
            "intent_id": plan.intent["id"],
            "tag": plan.tag,
            "ts": ts,
            "broker": self.broker,
            "broker_order_id": self.broker_order_id,
            "symbol": plan.intent["symbol"],
            "order_class": plan.order_class,
            "side": entry.side,
            "qty": entry.qty,
            "order_type": entry.order_type,
            "price": entry.price,
            "stop": entry.stop,
            "price_guard": entry.price,  # the worst price the entry accepts (None for a market exit)
            "duration": plan.duration,
            "legs": [leg.to_record(self.legs[leg.index].broker_id, self.legs[leg.index].status) for leg in plan.legs]
            if len(plan.legs) > 1
            else [],
            "status": self.status,
            "status_history": list(self.history),
            "payload": self.payload,
            "preview": self.preview,
        }


@dataclass
class Trade:
    """An intent and everything sent and filled for it."""

    bracket: Tracked
    exit: Tracked | None = None
    fills: list[Fill] = field(default_factory=list)
    fill_ids: set[str] = field(default_factory=set)
    closed: bool = False
    stopping: bool = False  # its time stop (or a flatten) is being carried out
    exit_reason: str = "time"  # what the market exit is for: time, flatten, eod or halt

    @property
    def intent(self) -> dict[str, Any]:
        return self.bracket.plan.intent

    def orders(self) -> list[Tracked]:
        return [self.bracket] if self.exit is None else [self.bracket, self.exit]

    def order(self, order_id: str) -> Tracked | None:
        return next((o for o in self.orders() if o.plan.order_id == order_id), None)

    def entry_qty(self) -> int:
        return self.bracket.legs[ENTRY].exec_qty

    def exit_qty(self) -> int:
        return sum(f.qty for f in self.fills if f.leg != ENTRY)

    def open_qty(self) -> int:
        return self.entry_qty() - self.exit_qty()


class Accountant:
    """Turns broker updates into ``orders``, ``fills`` and ``trade_ledger`` records."""

    def __init__(self, fees: FeeSchedule) -> None:
        self.fees = fees

    def status(self, trade: Trade, order: Tracked, status: str, ts: int, reason: str | None) -> list[tuple[str, Any]]:
        """An order-level status change (sent, acknowledged, rejected before sending, ...)."""
        if order.status == status and order.history:
            return []
        order.status = status
        ts = self._ts(order, ts)
        order.history.append({"ts": ts, "status": status, "reason": reason})
        return [(ORDERS, order.record(ts))]

    def apply(self, trade: Trade, update: OrderUpdate) -> list[tuple[str, Any]]:
        order = trade.order(update.order_id)
        if order is None:
            return []
        out: list[tuple[str, Any]] = []
        changed = False
        if update.broker_order_id and order.broker_order_id is None:
            order.broker_order_id = update.broker_order_id
            changed = True
        for leg_update in update.legs:
            leg = order.legs.get(leg_update.index)
            if leg is None:
                continue
            if leg_update.broker_id and leg.broker_id is None:
                leg.broker_id, changed = leg_update.broker_id, True
            out.extend(self._fills(trade, order, leg, leg_update, update.source))
            if leg_update.status != leg.status and not (leg.status in TERMINAL and leg_update.status not in TERMINAL):
                leg.status, changed = leg_update.status, True
        status_changed = update.status != order.status and not order.terminal
        if status_changed:
            order.status = update.status
        if status_changed or changed or out:
            ts = self._ts(order, update.ts)
            if status_changed:
                order.history.append({"ts": ts, "status": update.status, "reason": update.reason})
            out.insert(0, (ORDERS, order.record(ts)))
        out.extend(self.close_if_done(trade))
        return out

    def _ts(self, order: Tracked, ts: int) -> int:
        """Snapshots of one order have strictly increasing times (the table's key is (id, ts))."""
        ts = max(ts, order.last_ts + 1)
        order.last_ts = ts
        return ts

    def _fills(
        self, trade: Trade, order: Tracked, leg: LegState, update: LegUpdate, source: str
    ) -> list[tuple[str, Any]]:
        new_qty = update.exec_qty
        if new_qty <= leg.exec_qty:
            return []  # nothing new (a duplicate or a stale event)
        qty = new_qty - leg.exec_qty
        if update.last_fill_qty == qty and update.last_fill_price > 0:
            price = update.last_fill_price
        else:  # several executions since the last update: their average from the cumulative averages
            price = (update.avg_fill_price * new_qty - leg.avg_price * leg.exec_qty) / qty
        price = round(price, 6)
        first = leg.exec_qty == 0
        leg.exec_qty, leg.avg_price = new_qty, update.avg_fill_price
        plan_leg = next(x for x in order.plan.legs if x.index == update.index)
        fill_id = f"{order.plan.order_id}-{update.index}-{new_qty}"
        if fill_id in trade.fill_ids:
            return []
        intent = trade.intent
        option = intent["instrument"] == "option"
        fill = Fill(fill_id, update.index, qty, price, update.ts, self.fees.fee(qty, option, first))
        trade.fills.append(fill)
        trade.fill_ids.add(fill_id)
        if update.index == ENTRY:
            reference = intent.get("reference_price") or intent.get("entry_limit")
        else:
            reference = plan_leg.price if plan_leg.order_type == "limit" else plan_leg.stop
        buying = plan_leg.side.startswith("buy")
        slippage = None if reference is None else round((price - reference) if buying else (reference - price), 6)
        signal_ts = intent["ts"]
        record = {
            "id": fill_id,
            "order_id": order.plan.order_id,
            "broker_order_id": update.broker_id or order.broker_order_id,
            "signal_id": intent["signal_id"],
            "ts": update.ts,
            "symbol": intent.get("option_symbol") or intent["symbol"],
            "side": plan_leg.side,
            "qty": qty,
            "price": price,
            "leg_index": update.index,
            "reference_price": reference,
            "slippage": slippage,
            "latency_ms": round((update.ts - signal_ts) / 1e6, 3),
            "slippage_bps": None if slippage is None or not reference else round(slippage / reference * 1e4, 3),
            "submit_latency_ms": None if order.sent_ns is None else round((order.sent_ns - signal_ts) / 1e6, 3),
            "ack_latency_ms": None if order.acked_ns is None else round((order.acked_ns - signal_ts) / 1e6, 3),
            "source": source,
        }
        return [(FILLS, record)]

    def close_if_done(self, trade: Trade) -> list[tuple[str, Any]]:
        if trade.closed:
            return []
        entry_qty = trade.entry_qty()
        entry_done = trade.bracket.legs[0].status in TERMINAL or trade.bracket.terminal
        if entry_qty == 0 or not entry_done or trade.exit_qty() < entry_qty:
            return []
        trade.closed = True
        return [(TRADE_LEDGER, self.ledger(trade))]

    def ledger(self, trade: Trade) -> dict[str, Any]:
        intent = trade.intent
        plan = trade.bracket.plan
        entries = [f for f in trade.fills if f.leg == ENTRY]
        exits = [f for f in trade.fills if f.leg != ENTRY]
        qty = sum(f.qty for f in entries)
        entry_price = sum(f.qty * f.price for f in entries) / qty
        exit_price = sum(f.qty * f.price for f in exits) / sum(f.qty for f in exits)
        direction = 1 if plan.long else -1
        gross = Decimal(repr(exit_price - entry_price)) * direction * qty * plan.multiplier
        fees = sum((Decimal(repr(f.fee)) for f in trade.fills), Decimal(0))
        pnl = (gross - fees).quantize(MICRO, ROUND_HALF_EVEN)
        risk = Decimal(repr(intent["risk_per_share"])) * qty * plan.multiplier
        last_exit = max(exits, key=lambda f: (f.ts, f.id))
        return {
            "id": f"tl-{intent['signal_id']}",
            "signal_id": intent["signal_id"],
            "intent_id": intent["id"],
            "order_ids": [o.plan.order_id for o in trade.orders()],
            "fill_ids": [f.id for f in trade.fills],
            "symbol": intent.get("option_symbol") or intent["symbol"],
            "side": "long" if plan.long else "short",
            "qty": qty,
            "ts": last_exit.ts,
            "ts_open": min(f.ts for f in entries),
            "entry_price": round(entry_price, 6),
            "exit_price": round(exit_price, 6),
            "exit_reason": trade.exit_reason if last_exit.leg == EXIT else EXIT_REASONS.get(last_exit.leg, "manual"),
            "realized_pnl": pnl,
            "fees": fees.quantize(MICRO, ROUND_HALF_EVEN),
            "r_multiple": round(float(pnl / risk), 6) if risk > 0 else 0.0,
        }


def payload_json(form: list[tuple[str, str]]) -> str:
    """The request body as sent (form fields in order), as JSON; no secret is ever part of a form."""
    return json.dumps(form, separators=(",", ":"))
