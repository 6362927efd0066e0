"""The order router: intents in, orders sent, broker updates accounted, time stops enforced.

Broker-agnostic and free of Kafka: a broker port submits and cancels, updates come back through
:meth:`Router.on_update`, and every record goes out through ``emit(topic, record)``. Audit events go to
the ledger helper. The router is idempotent per intent: an intent already handled (known trade, or an
order with its tag found at the broker at start) is never sent again.

Time stops: when the clock passes an open trade's ``time_stop_ts`` the bracket is canceled and, once the
cancel is confirmed, whatever position is left is closed with a market order (cancel first, so a
take-profit filling in between cannot leave us with the opposite position).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.topics import FILLS, ORDERS, TRADE_LEDGER

from .audit import AuditSink
from .model import BrokerRejected, InvalidIntent, OrderPlan, OrderUpdate, Submitted, plan_bracket, plan_exit
from .tracker import Accountant, Fill, Tracked, Trade

log = logging.getLogger("scalp.execution")

Emit = Callable[[str, dict[str, Any]], None]


class BrokerPort(Protocol):
    name: str

    def submit(self, plan: OrderPlan, ts: int) -> Submitted: ...

    def cancel(self, broker_id: str, ts: int) -> None: ...


@dataclass
class RouterStats:
    intents: int = 0
    sent: int = 0
    adopted: int = 0
    rejected: int = 0
    invalid: int = 0
    duplicates: int = 0
    fills: int = 0
    closed: int = 0
    time_stops: int = 0
    unknown_events: int = 0
    outputs: dict[str, int] = field(default_factory=dict)


class Router:
    def __init__(
        self,
        broker: BrokerPort,
        accountant: Accountant,
        emit: Emit,
        audit: AuditSink,
        payload: Callable[[OrderPlan], str],
        *,
        preview: bool = False,
    ) -> None:
        self.broker = broker
        self.accountant = accountant
        self._emit = emit
        self.audit = audit
        self.payload = payload
        self.preview = preview
        self.trades: dict[str, Trade] = {}  # by intent id
        self.by_order: dict[str, Trade] = {}
        self.by_broker_id: dict[str, tuple[Trade, str]] = {}  # broker order id -> (trade, our order id)
        self.known_tags: dict[str, Any] = {}  # tag -> the broker's order id (found at start)
        self.restored_orders: dict[str, dict[str, Any]] = {}
        self.restored_fills: dict[str, list[dict[str, Any]]] = {}
        self.restored_ledger: set[str] = set()
        self.stats = RouterStats()

    def emit(self, outputs: list[tuple[str, Any]]) -> None:
        for topic, record in outputs:
            self.stats.outputs[topic] = self.stats.outputs.get(topic, 0) + 1
            if topic == FILLS:
                self.stats.fills += 1
            elif topic == TRADE_LEDGER:
                self.stats.closed += 1
            self._emit(topic, record)

    # --- intents ---------------------------------------------------------------------------------

    def on_intent(self, intent: dict[str, Any], now: int) -> None:
        self.stats.intents += 1
        if intent["id"] in self.trades:
            self.stats.duplicates += 1
            return
        try:
            plan = plan_bracket(intent)
        except InvalidIntent as exc:
            self._refuse(intent, str(exc))
            return
        trade = Trade(Tracked(plan, self.broker.name, self.payload(plan), preview=self.preview))
        self._register(trade, trade.bracket)
        if plan.order_id in self.restored_orders:  # handled by an earlier run: carry on from what it published
            self._resume(trade)
            return
        adopted = self.known_tags.get(plan.tag)
        if adopted is not None:
            self.stats.adopted += 1
            self.audit.record("adopted", plan.order_id, intent["ts"], broker_order_id=str(adopted))
            self._bind(trade, trade.bracket, Submitted(str(adopted), intent["ts"]))
            return
        if now >= intent["time_stop_ts"]:  # its time stop passed before we could send it
            self.emit(self.accountant.status(trade, trade.bracket, "expired", intent["ts"], "time stop passed"))
            self.audit.record("expired_unsent", plan.order_id, intent["ts"])
            return
        self._send(trade, trade.bracket, intent["ts"])

    def _refuse(self, intent: dict[str, Any], reason: str) -> None:
        """An intent that cannot be an order: an ``orders`` record with status rejected and the reason."""
        self.stats.invalid += 1
        log.warning("intent %s rejected before sending: %s", intent["id"], reason)
        self.audit.record("invalid_intent", f"ord-{intent['signal_id']}", intent["ts"], reason=reason)
        record = {
            "id": f"ord-{intent['signal_id']}",
            "intent_id": intent["id"],
            "tag": str(intent["signal_id"])[:255],
            "ts": intent["ts"],
            "broker": self.broker.name,
            "broker_order_id": None,
            "symbol": intent["symbol"],
            "order_class": "otoco",
            "side": intent["side"],
            "qty": int(intent["qty"]),
            "order_type": intent["entry_type"],
            "price": intent.get("entry_limit"),
            "stop": None,
            "price_guard": intent.get("entry_limit"),
            "duration": "day",
            "legs": [],
            "status": "rejected",
            "status_history": [{"ts": intent["ts"], "status": "rejected", "reason": reason}],
            "payload": "[]",
            "preview": self.preview,
        }
        self.emit([(ORDERS, record)])

    def _register(self, trade: Trade, order: Tracked) -> None:
        self.trades.setdefault(trade.intent["id"], trade)
        self.by_order[order.plan.order_id] = trade

    def _bind(self, trade: Trade, order: Tracked, submitted: Submitted) -> None:
        if not submitted.broker_order_id:  # a preview: nothing at the broker
            return
        order.broker_order_id = submitted.broker_order_id
        self.by_broker_id[submitted.broker_order_id] = (trade, order.plan.order_id)
        for index, leg_id in submitted.leg_ids.items():
            order.legs[index].broker_id = leg_id
            self.by_broker_id[leg_id] = (trade, order.plan.order_id)

    def _send(self, trade: Trade, order: Tracked, ts: int) -> None:
        plan = order.plan
        self.audit.record("order_sent", plan.order_id, ts, payload=order.payload)
        try:
            submitted = self.broker.submit(plan, ts)
        except BrokerRejected as exc:
            self.stats.rejected += 1
            log.warning("order %s rejected by %s: %s", plan.order_id, self.broker.name, exc.reason)
            self.audit.record("broker_rejected", plan.order_id, ts, reason=exc.reason)
            self.emit(self.accountant.status(trade, order, "rejected", max(ts, exc.ts), exc.reason))
            return
        self.stats.sent += 1
        self.audit.record(
            "broker_reply",
            plan.order_id,
            submitted.ts,
            broker_order_id=submitted.broker_order_id,
            status=submitted.status,
        )
        self._bind(trade, order, submitted)
        order.sent_ns = submitted.sent_ns if submitted.sent_ns is not None else ts
        order.acked_ns = submitted.acked_ns if submitted.acked_ns is not None else submitted.ts
        status = "previewed" if self.preview else submitted.status
        self.emit(self.accountant.status(trade, order, status, max(ts, submitted.ts), None))

    # --- broker updates --------------------------------------------------------------------------

    def on_update(self, update: OrderUpdate) -> None:
        trade = self.by_order.get(update.order_id)
        if trade is None:
            self.unknown(update.broker_order_id, update.ts, "update for an order we did not send")
            return
        order = trade.order(update.order_id)
        before = order.status if order else None
        outputs = self.accountant.apply(trade, update)
        if order is not None and order.status != before:
            self.audit.record("state_change", order.plan.order_id, update.ts, status=order.status, source=update.source)
        self.emit(outputs)
        for broker_id in [update.broker_order_id, *(leg.broker_id for leg in update.legs)]:
            if broker_id:
                self.by_broker_id.setdefault(broker_id, (trade, update.order_id))
        self._after_update(trade, update.ts)

    def unknown(self, broker_id: str | None, ts: int | None, why: str, **detail: Any) -> None:
        """An event about an order we do not know: logged and recorded; the router goes on."""
        self.stats.unknown_events += 1
        log.warning("broker event for unknown order %s: %s", broker_id, why)
        self.audit.record("unknown_order", None, ts, broker_order_id=broker_id, reason=why, **detail)

    def _after_update(self, trade: Trade, ts: int) -> None:
        """Once a time-stopped bracket is canceled, close what is left with a market order."""
        if trade.stopping and trade.bracket.terminal and trade.exit is None:
            left = trade.open_qty()
            if left > 0:
                exit_plan = plan_exit(trade.bracket.plan, left)
                trade.exit = Tracked(exit_plan, self.broker.name, self.payload(exit_plan), preview=self.preview)
                self._register(trade, trade.exit)
                self._send(trade, trade.exit, ts)

    # --- clock -----------------------------------------------------------------------------------

    def on_clock(self, now: int, symbol: str | None = None) -> None:
        """Time stops due at ``now`` (event time for paper, the broker's clock for a live broker)."""
        for trade in list(self.trades.values()):
            if trade.closed or trade.stopping or self.preview:
                continue
            if symbol is not None and trade.intent["symbol"] != symbol:
                continue
            if now < trade.intent["time_stop_ts"] or trade.bracket.broker_order_id is None:
                continue
            if trade.bracket.terminal and trade.open_qty() == 0:
                continue
            trade.stopping = True
            self.stats.time_stops += 1
            self.audit.record("time_stop", trade.bracket.plan.order_id, now, open_qty=trade.open_qty())
            if trade.bracket.terminal:
                self._after_update(trade, now)
            else:
                self.broker.cancel(trade.bracket.broker_order_id, now)

    def open_trades(self) -> list[Trade]:
        return [t for t in self.trades.values() if not t.closed and not all(o.terminal for o in t.orders())]

    # --- restart ---------------------------------------------------------------------------------

    def restore(self, orders: dict[str, dict[str, Any]], fills: list[dict[str, Any]], ledger: set[str]) -> None:
        """What earlier runs published (latest ``orders`` snapshot per id, every ``fills`` record): trades
        are rebuilt as they stood, so updates only add what is new."""
        self.restored_orders = orders
        self.restored_fills = {}
        self.restored_ledger = ledger
        for f in fills:
            self.restored_fills.setdefault(f["order_id"], []).append(f)

    def _resume(self, trade: Trade) -> None:
        exit_snap = self.restored_orders.get(f"{trade.bracket.plan.order_id}-x")
        if exit_snap is not None:
            exit_plan = plan_exit(trade.bracket.plan, int(exit_snap["qty"]))
            trade.exit = Tracked(exit_plan, self.broker.name, self.payload(exit_plan), preview=self.preview)
            trade.stopping = True
            self._register(trade, trade.exit)
        self.adopt_published(trade)
        self.stats.adopted += 1
        trade.closed = f"tl-{trade.intent['signal_id']}" in self.restored_ledger
        if trade.bracket.broker_order_id is None and not trade.bracket.terminal:
            # published as pending but never acknowledged: the broker listing decides (tag), else send
            adopted = self.known_tags.get(trade.bracket.plan.tag)
            if adopted is not None:
                self._bind(trade, trade.bracket, Submitted(str(adopted), trade.intent["ts"]))
            else:
                self._send(trade, trade.bracket, trade.intent["ts"])

    def adopt_published(self, trade: Trade) -> None:
        for order in trade.orders():
            snap = self.restored_orders.get(order.plan.order_id)
            if snap is None:
                continue
            order.status = snap["status"]
            order.history = list(snap["status_history"])
            order.last_ts = snap["ts"]
            if snap["broker_order_id"]:
                legs = {leg["index"]: leg["broker_leg_id"] for leg in snap["legs"] if leg["broker_leg_id"]}
                self._bind(trade, order, Submitted(snap["broker_order_id"], snap["ts"], legs))
            for leg in snap["legs"]:
                if leg["status"] and leg["index"] in order.legs:
                    order.legs[leg["index"]].status = leg["status"]
            for f in sorted(
                self.restored_fills.get(order.plan.order_id, []), key=lambda r: (r["leg_index"], r["ts"], r["id"])
            ):
                leg = order.legs[f["leg_index"]]
                option = trade.intent["instrument"] == "option"
                fee = self.accountant.fees.fee(f["qty"], option, leg.exec_qty == 0)
                leg.avg_price = (leg.avg_price * leg.exec_qty + f["price"] * f["qty"]) / (leg.exec_qty + f["qty"])
                leg.exec_qty += f["qty"]
                trade.fills.append(Fill(f["id"], f["leg_index"], f["qty"], f["price"], f["ts"], fee))
                trade.fill_ids.add(f["id"])
