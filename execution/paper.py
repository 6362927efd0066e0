"""The paper broker: orders filled against the ``market_quotes`` stream, in event time, deterministically.

Rules (``PaperSettings``):
- An order (or a cancel) takes effect ``latency_ms`` after it is sent; quotes before that do not touch it.
- A limit entry fills at the touch (the ask for a buy, the bid for a sell) when the touch is at or better
  than its limit; a market order fills at the touch.
- Bracket exits work once the entry has filled, for the quantity filled: the take-profit limit fills at
  its limit when the bid (long) / ask (short) reaches it; the stop triggers when the bid (long) falls to
  or the ask (short) rises to its stop, and then fills at that touch (slippage included).
- Each fill takes at most what the quote shows at that price (``size * lot_size`` shares), so a large
  order fills partially over several quotes.
- When one exit closes the position the other is canceled (OCO).
Fills carry the quote's event time. The same quotes and orders give the same fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from execution.model import (
    ENTRY,
    STOP_LOSS,
    TAKE_PROFIT,
    TERMINAL,
    LegUpdate,
    OrderPlan,
    OrderUpdate,
    Submitted,
)
from execution.settings import PaperSettings

MS = 1_000_000
MICRO = Decimal("0.000001")


@dataclass
class _Leg:
    index: int
    side: str
    order_type: str
    qty: int
    price: float | None
    stop: float | None
    status: str = "pending"
    exec_qty: int = 0
    avg: float = 0.0
    last_qty: int = 0
    last_price: float = 0.0

    @property
    def buying(self) -> bool:
        return self.side.startswith("buy")

    def fill(self, qty: int, price: float) -> None:
        self.avg = (self.avg * self.exec_qty + price * qty) / (self.exec_qty + qty)
        self.exec_qty += qty
        self.last_qty, self.last_price = qty, price
        self.status = "filled" if self.exec_qty >= self.qty else "partially_filled"


@dataclass
class _Order:
    plan: OrderPlan
    broker_id: str
    active_ts: int
    legs: list[_Leg]
    symbol: str
    status: str = "pending"
    cancel_ts: int | None = None

    def leg_ids(self) -> dict[int, str]:
        return {leg.index: f"{self.broker_id}-{leg.index}" for leg in self.legs}


@dataclass
class Account:
    cash: Decimal
    positions: dict[str, tuple[int, Decimal]] = field(default_factory=dict)  # symbol -> (qty, cost basis)
    realized: Decimal = Decimal(0)
    marks: dict[str, float] = field(default_factory=dict)

    def fill(self, symbol: str, buying: bool, qty: int, price: float) -> None:
        signed = qty if buying else -qty
        value = Decimal(repr(price)) * qty
        self.cash += -value if buying else value
        held, basis = self.positions.get(symbol, (0, Decimal(0)))
        if held == 0 or (held > 0) == (signed > 0):
            held, basis = held + signed, basis + (value if buying else -value)
        else:  # closing (part of) the position at average cost
            closing = min(abs(signed), abs(held))
            unit = basis / held
            self.realized += (Decimal(repr(price)) - unit) * closing * (1 if held > 0 else -1)
            held += signed
            basis = unit * held if held != 0 and (held > 0) == (held - signed > 0) else Decimal(repr(price)) * held
        if held == 0:
            self.positions.pop(symbol, None)
        else:
            self.positions[symbol] = (held, basis)


class PaperBroker:
    name = "paper"

    def __init__(self, settings: PaperSettings) -> None:
        self.settings = settings
        self.orders: dict[str, _Order] = {}
        self.by_symbol: dict[str, list[_Order]] = {}
        self.seq = 0
        self.account = Account(cash=Decimal(repr(settings.start_cash_usd)))

    def submit(self, plan: OrderPlan, ts: int) -> Submitted:
        self.seq += 1
        broker_id = f"P{self.seq}"
        legs = [_Leg(x.index, x.side, x.order_type, x.qty, x.price, x.stop) for x in plan.legs]
        order = _Order(plan, broker_id, ts + int(self.settings.latency_ms * MS), legs, plan.entry.symbol)
        self.orders[broker_id] = order
        self.by_symbol.setdefault(order.symbol, []).append(order)
        # acknowledged (live) once the latency has passed: the paper clock is event time
        return Submitted(broker_id, ts, order.leg_ids(), "pending", sent_ns=ts, acked_ns=order.active_ts)

    def cancel(self, broker_id: str, ts: int) -> None:
        order = self.orders.get(broker_id)
        if order is not None and order.status not in TERMINAL:
            order.cancel_ts = ts + int(self.settings.latency_ms * MS)

    def on_quote(self, quote: dict[str, Any]) -> list[OrderUpdate]:
        symbol, ts = quote["symbol"], quote["ts"]
        bid, ask = quote.get("bid"), quote.get("ask")
        if bid and ask and bid > 0 and ask > 0:
            self.account.marks[symbol] = (bid + ask) / 2
        orders = self.by_symbol.get(symbol)
        if not orders:  # most quotes: nothing working on the symbol
            return []
        updates: list[OrderUpdate] = []
        for order in orders:
            if order.status in TERMINAL or ts < order.active_ts:
                continue
            before = [(leg.status, leg.exec_qty) for leg in order.legs]
            status_before = order.status
            self._work(order, quote)
            if order.status != status_before or before != [(leg.status, leg.exec_qty) for leg in order.legs]:
                updates.append(self._update(order, ts))
            for leg, (_, qty) in zip(order.legs, before, strict=True):
                if leg.exec_qty > qty:
                    self.account.fill(symbol, leg.buying, leg.exec_qty - qty, leg.last_price)
        self.by_symbol[symbol] = [o for o in orders if o.status not in TERMINAL]
        return updates

    def _work(self, order: _Order, q: dict[str, Any]) -> None:
        ts, lot = q["ts"], self.settings.lot_size
        if order.cancel_ts is not None and ts >= order.cancel_ts:
            for leg in order.legs:
                if leg.status not in TERMINAL:
                    leg.status = "canceled"
            order.status = "canceled"
            return
        if order.status == "pending":
            order.status = "open"
            for leg in order.legs:
                leg.status = "open"
        bid, ask = q.get("bid") or 0.0, q.get("ask") or 0.0
        bid_qty, ask_qty = int(q.get("bid_size") or 0) * lot, int(q.get("ask_size") or 0) * lot
        if len(order.legs) == 1:  # a plain order (the time-stop exit: market)
            leg = order.legs[0]
            touch, avail = (ask, ask_qty) if leg.buying else (bid, bid_qty)
            limit_ok = leg.price is None or (touch <= leg.price if leg.buying else touch >= leg.price)
            if touch > 0 and avail > 0 and limit_ok:
                leg.fill(min(leg.qty - leg.exec_qty, avail), touch)
            order.status = leg.status if leg.exec_qty else order.status
            return
        entry, take, stop = order.legs[ENTRY], order.legs[TAKE_PROFIT], order.legs[STOP_LOSS]
        if entry.status not in TERMINAL:
            touch, avail = (ask, ask_qty) if entry.buying else (bid, bid_qty)
            assert entry.price is not None  # noqa: S101 (OTOCO entries are limits)
            if touch > 0 and avail > 0 and (touch <= entry.price if entry.buying else touch >= entry.price):
                entry.fill(min(entry.qty - entry.exec_qty, avail), touch)
        open_qty = entry.exec_qty - take.exec_qty - stop.exec_qty
        closing: _Leg | None = None
        if open_qty > 0:
            touch, avail = (ask, ask_qty) if take.buying else (bid, bid_qty)
            assert take.price is not None  # noqa: S101
            assert stop.stop is not None  # noqa: S101
            if touch > 0 and avail > 0:
                if (take.buying and touch <= take.price) or (not take.buying and touch >= take.price):
                    take.fill(min(open_qty, avail), take.price)
                    closing = take
                elif (stop.buying and touch >= stop.stop) or (not stop.buying and touch <= stop.stop):
                    stop.fill(min(open_qty, avail), touch)
                    closing = stop
        closed = take.exec_qty + stop.exec_qty
        if entry.status == "filled" and closed >= entry.exec_qty:
            for leg in (take, stop):
                if leg is closing:
                    leg.status = "filled"  # it closed the position (its quantity was what was left)
                elif leg.status not in TERMINAL:
                    leg.status = "canceled"  # OCO: the sibling of the exit that closed the position
            order.status = "filled"
        elif any(leg.exec_qty for leg in order.legs):
            order.status = "partially_filled"

    def _update(self, order: _Order, ts: int) -> OrderUpdate:
        legs = tuple(
            LegUpdate(
                leg.index,
                f"{order.broker_id}-{leg.index}",
                leg.status,
                leg.exec_qty,
                round(leg.avg, 6),
                ts,
                leg.last_qty,
                leg.last_price,
            )
            for leg in order.legs
        )
        return OrderUpdate(order.plan.order_id, order.broker_id, order.status, ts, "paper", legs)

    def snapshot(self, ts: int, session: str) -> dict[str, Any]:
        a = self.account
        unrealized = Decimal(0)
        for symbol, (qty, basis) in a.positions.items():
            mark = a.marks.get(symbol)
            if mark is not None:
                unrealized += Decimal(repr(mark)) * qty - basis
        equity = a.cash + sum((Decimal(repr(a.marks.get(s, 0.0))) * q for s, (q, _) in a.positions.items()), Decimal(0))
        return {
            "account_id": self.settings.account_id,
            "ts": ts,
            "session": session,
            "cash": a.cash.quantize(MICRO),
            "equity": equity.quantize(MICRO),
            "unrealized_pnl": unrealized.quantize(MICRO),
            "realized_pnl": a.realized.quantize(MICRO),
            "buying_power": None,
            "positions": [
                {"symbol": s, "qty": q, "cost_basis": b.quantize(MICRO)} for s, (q, b) in sorted(a.positions.items())
            ],
        }


class PaperPort:
    """The paper broker behind the router's port (submissions and cancels in event time)."""

    name = "paper"

    def __init__(self, broker: PaperBroker) -> None:
        self.broker = broker

    def submit(self, plan: OrderPlan, ts: int) -> Submitted:
        return self.broker.submit(plan, ts)

    def cancel(self, broker_id: str, ts: int) -> None:
        self.broker.cancel(broker_id, ts)

    def lookup(self, plan: OrderPlan, fresh: bool) -> str | None:
        return None  # the paper broker lives in this process: nothing of an earlier run is left to find
