"""The order router: intents in, orders sent, broker updates accounted, time stops enforced.

Broker-agnostic and free of Kafka: a broker port submits and cancels, updates come back through
:meth:`Router.on_update`, and every record goes out through ``emit(topic, record)``. Audit events go to
the ledger helper. The router is idempotent per intent: an intent already handled (known trade, or an
order with its tag found at the broker at start) is never sent again.

Time stops: when the clock passes an open trade's ``time_stop_ts`` the bracket is canceled and, once the
cancel is confirmed, whatever position is left is closed with a market order (cancel first, so a
take-profit filling in between cannot leave us with the opposite position). A flatten, a halt (for
brackets whose entry has not filled) and the end-of-day flatten close trades the same way.

With a :class:`~execution.guard.Guard` (the live router; replays run without one) every entry passes the
trading state and the pre-trade limits first, and every order is recorded as ``sending`` (and flushed by
the guard's ``before_send``) before the broker is called: a router restarted at any instant finds such an
order at the broker (:meth:`BrokerPort.lookup`) before it would send it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafkaio.errors import ScalpError
from schemas.topics import FILLS, ORDERS, TRADE_LEDGER

from .audit import AuditSink
from .guard import Guard, StateChange, TradingState
from .model import BrokerRejected, InvalidIntent, OrderPlan, OrderUpdate, Submitted, plan_bracket, plan_exit
from .tracker import Accountant, Fill, Tracked, Trade

log = logging.getLogger("scalp.execution")

Emit = Callable[[str, dict[str, Any]], None]


class BrokerPort(Protocol):
    name: str

    def submit(self, plan: OrderPlan, ts: int) -> Submitted: ...

    def cancel(self, broker_id: str, ts: int) -> None: ...

    def lookup(self, plan: OrderPlan, fresh: bool) -> str | None:
        """The broker's id of an order matching ``plan`` (tag, class, side, symbol) among today's orders:
        from the listing taken at start, or (``fresh``) from a new one. None when there is none."""
        ...


@dataclass
class RouterStats:
    intents: int = 0
    sent: int = 0
    adopted: int = 0
    rejected: int = 0
    invalid: int = 0
    refused: int = 0
    duplicates: int = 0
    fills: int = 0
    closed: int = 0
    time_stops: int = 0
    unknown_events: int = 0
    outputs: dict[str, int] = field(default_factory=dict)
    # (stage, seconds): signal venue time to the broker's acknowledgement ("ack") or a fill ("fill"); the
    # metrics set it
    observe: Callable[[str, float], None] | None = None


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
        guard: Guard | None = None,
        on_state: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.broker = broker
        self.guard = guard
        self.on_state = on_state  # the live router publishes state changes it makes itself
        self.accountant = accountant
        self._emit = emit
        self.audit = audit
        self.payload = payload
        self.preview = preview
        self.trades: dict[str, Trade] = {}  # by intent id
        self._live: dict[str, Trade] = {}  # the trades not yet closed (closing is final), in the same order
        self.by_order: dict[str, Trade] = {}
        self.by_broker_id: dict[str, tuple[Trade, str]] = {}  # broker order id -> (trade, our order id)
        self.restored_orders: dict[str, dict[str, Any]] = {}
        self.restored_fills: dict[str, list[dict[str, Any]]] = {}
        self.restored_ledger: set[str] = set()
        self.stats = RouterStats()

    def emit(self, outputs: list[tuple[str, Any]]) -> None:
        for topic, record in outputs:
            self.stats.outputs[topic] = self.stats.outputs.get(topic, 0) + 1
            if topic == FILLS:
                self.stats.fills += 1
                if self.stats.observe is not None:
                    self.stats.observe("fill", record["latency_ms"] / 1e3)
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
        open_positions = len(self.open_trades())
        trade = Trade(Tracked(plan, self.broker.name, self.payload(plan), preview=self.preview))
        self._register(trade, trade.bracket)
        if plan.order_id in self.restored_orders:  # handled by an earlier run: carry on from what it published
            self._resume(trade, now)
            return
        adopted = self.broker.lookup(plan, fresh=False)  # at the broker already (its records were lost)
        if adopted is not None:
            self.stats.adopted += 1
            self.audit.record("adopted", plan.order_id, intent["ts"], broker_order_id=str(adopted))
            self._bind(trade, trade.bracket, Submitted(str(adopted), intent["ts"]))
            return
        if now >= intent["time_stop_ts"]:  # its time stop passed before we could send it
            self.emit(self.accountant.status(trade, trade.bracket, "expired", intent["ts"], "time stop passed"))
            self.audit.record("expired_unsent", plan.order_id, intent["ts"])
            return
        refusal = None if self.guard is None else self.guard.refusal(plan, now, open_positions)
        if refusal is not None:
            self._refuse_plan(trade, refusal, now)
            return
        self._send(trade, trade.bracket, intent["ts"])

    def _refuse_plan(self, trade: Trade, reason: str, now: int) -> None:
        """A limit or the trading state stopped an entry: an ``orders`` record with status refused."""
        self.stats.refused += 1
        order_id = trade.bracket.plan.order_id
        log.warning("order %s refused: %s", order_id, reason)
        self.audit.record("refused", order_id, now, reason=reason, limit=reason.split(":", 1)[0])
        self.emit(self.accountant.status(trade, trade.bracket, "refused", trade.intent["ts"], reason))

    def _refuse(self, intent: dict[str, Any], reason: str) -> None:
        """An intent that cannot be an order: an ``orders`` record with status refused and the reason."""
        self.stats.invalid += 1
        log.warning("intent %s refused before sending: %s", intent["id"], reason)
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
            "status": "refused",
            "status_history": [{"ts": intent["ts"], "status": "refused", "reason": reason}],
            "payload": "[]",
            "preview": self.preview,
        }
        self.emit([(ORDERS, record)])

    def _register(self, trade: Trade, order: Tracked) -> None:
        if trade.intent["id"] not in self.trades:
            self.trades[trade.intent["id"]] = self._live[trade.intent["id"]] = trade
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
        entry = order is trade.bracket
        if self.guard is not None and not self.preview:  # recorded (and flushed) before the broker hears of it
            why = None if entry else trade.exit_reason
            self.emit(self.accountant.status(trade, order, "sending", ts, why))
            try:
                if self.guard.before_send is not None:
                    self.guard.before_send()
            except ScalpError as exc:
                reason = f"not sent: its sending record was not delivered ({exc})"
                self.emit(self.accountant.status(trade, order, "refused", ts, reason))
                self.halt(f"delivery failed before sending {plan.order_id}: {exc}", ts)
                return
            if entry:
                self.guard.sent(plan.order_id, ts)
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
        if entry and self.stats.observe is not None:
            self.stats.observe("ack", (order.acked_ns - trade.intent["ts"]) / 1e9)
        status = "previewed" if self.preview else submitted.status
        self.emit(self.accountant.status(trade, order, status, max(ts, submitted.ts), None))

    # --- trading state ---------------------------------------------------------------------------

    def halt(self, reason: str, ts: int | None) -> None:
        """The router halts itself (a delivery failure, a reconciliation mismatch): entries stop at once."""
        if self.guard is None:
            return
        log.error("trading HALTED: %s", reason)
        self.audit.record("trading_state", None, ts, state="halted", command="halt", reason=reason, by="router")
        if self.guard.state is TradingState.HALTED:
            return  # halted already: published once (a failing producer must not feed on its own halts)
        self.guard.halt(reason, ts)
        if self.on_state is not None:
            self.on_state(self.guard.change)

    def on_control(self, record: dict[str, Any], now: int, *, enforce: bool = True) -> str:
        """Apply a control record addressed to this router (raises UnknownCommand, state unchanged).
        ``enforce``: carry out what the command does now (False while the state is rebuilt at start; the
        caller then calls :meth:`enforce_state` once the trades are resumed)."""
        if self.guard is None:
            raise ScalpError("a router without a guard takes no control commands")
        command = self.guard.apply(record)
        log.warning("trading state %s (%s)", self.guard.change.describe(), command)
        self.audit.record(
            "trading_state", None, record.get("ts"), state=self.guard.state.value, command=command,
            reason=record.get("reason"), by=record.get("issued_by"),
        )  # fmt: skip
        if enforce:
            self.enforce_state(now)
        return command

    def enforce_state(self, now: int) -> None:
        """What the current state asks of open trades: a flatten closes all of them, a halt cancels the
        brackets whose entry has not filled (a filled position keeps its take-profit and stop)."""
        if self.guard is None or self.preview:
            return
        command = self.guard.change.command
        if command == "flatten":
            self.flatten(now, "flatten")
        elif command == "halt":
            for trade in self._closable():
                if trade.entry_qty() == 0 and not trade.bracket.terminal:
                    self._stop(trade, now, "halt")

    def flatten(self, now: int, reason: str) -> None:
        """Cancel every bracket and close every position with a market order (``exit_reason`` = reason)."""
        for trade in self._closable():
            self._stop(trade, now, reason)

    def _closable(self) -> list[Trade]:
        """The trades a stop may close, in the order they came (asked on every quote: only the trades not
        yet closed are looked at, and a closed one leaves that index here)."""
        live = self._live
        if not live:
            return []
        done = [key for key, t in live.items() if t.closed]
        for key in done:
            del live[key]
        return [
            t
            for t in live.values()
            if not t.stopping and t.bracket.broker_order_id is not None
            and not (t.bracket.terminal and t.open_qty() == 0)
        ]  # fmt: skip

    def _stop(self, trade: Trade, now: int, reason: str) -> None:
        trade.stopping = True
        trade.exit_reason = reason
        self.audit.record(reason if reason != "time" else "time_stop", trade.bracket.plan.order_id, now,
                          open_qty=trade.open_qty())  # fmt: skip
        if trade.bracket.terminal:
            self._after_update(trade, now)
        elif trade.bracket.broker_order_id is not None:
            self.broker.cancel(trade.bracket.broker_order_id, now)

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
        """Time stops due at ``now`` (event time for paper, the broker's clock for a live broker), and the
        end-of-day flatten."""
        if self.preview:
            return
        if self.guard is not None and self.guard.eod_due(now):
            log.warning("end-of-day flatten: closing %d open trades", len(self._closable()))
            self.flatten(now, "eod")
        for trade in self._closable():
            if symbol is not None and trade.intent["symbol"] != symbol:
                continue
            if now < trade.intent["time_stop_ts"]:
                continue
            self.stats.time_stops += 1
            self._stop(trade, now, "time")

    def open_trades(self) -> list[Trade]:
        return [t for t in self._live.values() if not t.closed and not all(o.terminal for o in t.orders())]

    # --- restart ---------------------------------------------------------------------------------

    def restore(self, orders: dict[str, dict[str, Any]], fills: list[dict[str, Any]], ledger: set[str]) -> None:
        """What earlier runs published (latest ``orders`` snapshot per id, every ``fills`` record): trades
        are rebuilt as they stood, so updates only add what is new."""
        self.restored_orders = orders
        self.restored_fills = {}
        self.restored_ledger = ledger
        for f in fills:
            self.restored_fills.setdefault(f["order_id"], []).append(f)
        if self.guard is not None:  # entries earlier runs sent count against today's limit
            for snap in orders.values():
                history = snap["status_history"]
                if snap["order_class"] == "otoco" and history and snap["status"] != "refused":
                    self.guard.restore_entry(snap["id"], history[0]["ts"])

    def _resume(self, trade: Trade, now: int) -> None:
        exit_snap = self.restored_orders.get(f"{trade.bracket.plan.order_id}-x")
        if exit_snap is not None:
            exit_plan = plan_exit(trade.bracket.plan, int(exit_snap["qty"]))
            trade.exit = Tracked(exit_plan, self.broker.name, self.payload(exit_plan), preview=self.preview)
            trade.stopping = True
            first = exit_snap["status_history"][0] if exit_snap["status_history"] else {}
            trade.exit_reason = first.get("reason") or "time"
            self._register(trade, trade.exit)
        self.adopt_published(trade)
        self.stats.adopted += 1
        trade.closed = f"tl-{trade.intent['signal_id']}" in self.restored_ledger
        for order in trade.orders():
            if order.broker_order_id is not None or order.terminal or self.preview:
                continue
            # recorded as sending but never acknowledged: the broker decides whether it got there
            found = self.broker.lookup(order.plan, fresh=True)
            if found is not None:
                log.warning("order %s was sent before the restart: at the broker as %s", order.plan.order_id, found)
                self.audit.record("adopted", order.plan.order_id, now, broker_order_id=found, after="sending")
                self._bind(trade, order, Submitted(found, now))
                self.emit(self.accountant.status(trade, order, "pending", now, "found at the broker after a restart"))
                continue
            if order is trade.bracket and self.guard is not None:
                refusal = self.guard.resend_refusal(order.plan, now)
                if refusal is not None:
                    self._refuse_plan(trade, refusal, now)
                    continue
            self._send(trade, order, now)

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
