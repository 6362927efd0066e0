"""`scalp execute --broker tradier`: the router on Kafka against Tradier (REST + account events stream).

At start the router reads back what earlier runs published (``orders``, ``fills``, ``trade_ledger``), the
control topic (its trading state) and today's broker orders, then reads ``order_intents`` from the start:
a trade an earlier run handled is resumed where it stood; an order it recorded as ``sending`` is looked up
at the broker (tag, class, side, symbol) before it would be sent again. Once the intents are read and the
open orders polled, the broker's positions are reconciled with what the records say: a difference halts
entries (an operator inspects it, then ``scalp resume``).

Tradier runs on the broker's clock (the ``Date`` of its replies): fills come from the account stream, with
``GET /orders`` polled every ``poll_interval_s`` as the backstop (a fill seen only by polling is still
recorded, once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from execution.router import Router
from execution.settings import ExecutionSettings
from execution.tracker import Accountant, FeeSchedule, payload_json
from kafkaio.lifecycle import stop_on_signals
from kafkaio.producer import AvroProducer
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import ACCOUNT_SNAPSHOT, ORDER_INTENTS
from sinks.audit import AuditWriter
from streams.core.sessions import Calendar

from .common import (
    CaughtUp,
    Outputs,
    Published,
    RunResult,
    assign_all,
    consumer,
    dead_letters,
    decode_all,
    make_guard,
    session_of,
)
from .control import ControlFeed, own_changes, watch_deliveries

log = logging.getLogger("scalp.execution")


def expected_positions(router: Router) -> dict[str, int]:
    """Net quantity per symbol that the router's records say the account holds (open trades only)."""
    held: dict[str, int] = {}
    for trade in router.trades.values():
        qty = trade.open_qty()
        if trade.closed or qty == 0:
            continue
        symbol = trade.intent.get("option_symbol") or trade.intent["symbol"]
        held[symbol] = held.get(symbol, 0) + (qty if trade.bracket.plan.long else -qty)
    return held


def broker_positions(body: dict[str, Any]) -> dict[str, int]:
    from connectors.tradier.parsing import items

    return {str(p["symbol"]): int(float(p["quantity"])) for p in items(body.get("positions"), "position")}


def differences(expected: dict[str, int], held: dict[str, int], underlyings: tuple[str, ...]) -> list[str]:
    """Symbols whose broker position differs from the records (positions in other underlyings are not ours)."""
    out = []
    for symbol in sorted(set(expected) | set(held)):
        if symbol not in expected and underlyings and not symbol.startswith(underlyings):
            continue
        if expected.get(symbol, 0) != held.get(symbol, 0):
            out.append(f"{symbol}: broker {held.get(symbol, 0)}, records {expected.get(symbol, 0)}")
    return out


def run_tradier(
    kafka: KafkaSettings,
    serde: AvroSerde,
    settings: ExecutionSettings,
    tradier: Any,
    audit: AuditWriter,
    *,
    preview: bool,
    until_idle: float | None,
    progress: Callable[[RunResult], None] | None = None,
    lease_check: Callable[[], None] = lambda: None,
) -> RunResult:
    from connectors.tradier.broker import TradierPort, stream_update
    from connectors.tradier.parsing import account_snapshot, http_date_ns, order_form, order_update
    from connectors.tradier.rest import TradierClient, TradierError
    from connectors.tradier.stream import AccountStream

    client = TradierClient(tradier)
    port = TradierPort(client, preview)
    producer = AvroProducer(kafka, serde)
    published = Published.read(kafka, serde)
    outputs = Outputs(producer, published)
    fees = FeeSchedule(settings.fees.per_share_usd, settings.fees.per_contract_usd, settings.fees.per_order_usd)
    calendar = Calendar().load()  # at start, not on the first intent
    # every order is recorded as sending, and that record flushed, before the broker hears of it
    guard = make_guard(settings, calendar, lambda: producer.flush(10))
    router = Router(
        port, Accountant(fees), outputs, audit, lambda plan: payload_json(order_form(plan, preview)), preview=preview,
        guard=guard, on_state=own_changes(producer, client.account_id),
    )  # fmt: skip
    router.restore(published.orders, published.fills, published.ledger)
    result = RunResult(router, outputs, audit)

    def clock() -> int:
        """The broker's clock (Date of its last reply)."""
        return http_date_ns(client.last_date) or 0

    def poll() -> None:
        for obj in client.orders():
            trade = router.by_broker_id.get(str(obj.get("id")), (None, ""))[0]
            if trade is None:
                continue  # not one of ours (or not yet bound): adoption looks orders up by identity
            for order in trade.orders():
                if order.broker_order_id == str(obj.get("id")):
                    router.on_update(order_update(obj, order.plan, "poll", clock()))

    def reconcile() -> None:
        """Broker positions against the records, after the open orders were polled; retried twice a second
        apart, so a fill landing between the poll and the positions call is not taken for a difference."""
        diffs: list[str] = []
        for attempt in range(3):
            if attempt:
                time.sleep(1.0)
            poll()
            diffs = differences(
                expected_positions(router), broker_positions(client.positions()), settings.limits.allowed_symbols
            )
            if not diffs:
                log.info("reconciled: the broker's positions match the records")
                return
        audit.record("reconcile_mismatch", None, clock(), differences=diffs)
        router.halt("positions differ from the records: " + "; ".join(diffs), clock())

    port.list_today()  # today's orders: what an earlier run sent is adopted, never sent again
    control = ControlFeed(kafka, serde, producer, client.account_id)
    control.catch_up(router, clock)
    lim = settings.limits
    log.warning(
        "router for %s: state %s; limits: qty %d, notional %.0f USD, %d orders/day, %d open, %s, intents <= %g s "
        "old, %d submits/s, flatten %g min before the close",
        client.account_id, guard.change.describe(), lim.max_order_qty, lim.max_order_notional_usd,
        lim.max_orders_per_day, lim.max_open_positions, ",".join(lim.allowed_symbols), lim.max_intent_age_s,
        lim.max_submits_per_s, lim.eod_flatten_minutes,
    )  # fmt: skip
    events: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
    stream = AccountStream(client, tradier.stream_url, events)
    stream.start()
    intents_c = consumer(kafka, "tradier-intents")
    caught_up = CaughtUp(assign_all(intents_c, kafka.topic(ORDER_INTENTS)))
    dead = dead_letters(producer, result)

    stopped = threading.Event()  # set by SIGTERM/SIGINT
    last_input = last_poll = last_lease = time.monotonic()
    last_snapshot = float("-inf")  # one at start
    poll_now = True
    started = reconciled = False  # started: the intents were read to their end and the state enforced
    try:
        with stop_on_signals(stopped.set, "stopping the router"):
            while not stopped.is_set():
                now = time.monotonic()  # the account first: the initial snapshot precedes any order
                if now - last_snapshot >= settings.snapshot_interval_s:
                    try:
                        balances, positions = client.balances(), client.positions()
                        snap_ts = clock()
                        snapshot = account_snapshot(
                            client.account_id, balances, positions, snap_ts, session_of(calendar, snap_ts)
                        )
                        outputs(ACCOUNT_SNAPSHOT, snapshot)
                    except TradierError as exc:
                        log.warning("account snapshot failed: %s", exc)
                    last_snapshot = now
                control.poll(router, clock, enforce=started)  # before the intents: a halt wins the race
                intents = caught_up.observe(intents_c.consume(100, timeout=0.1))
                for intent in decode_all(serde, intents, ORDER_INTENTS, dead):
                    last_input = time.monotonic()
                    router.on_intent(intent, clock() or intent["ts"])
                while True:
                    try:
                        kind, event, why = events.get_nowait()
                    except queue.Empty:
                        break
                    last_input = time.monotonic()
                    if kind == "reconnected":
                        poll_now = True
                    elif kind == "bad":
                        router.unknown(None, None, f"malformed account event: {why}", raw=str(event)[:500])
                    else:
                        stream_update(router, event, client, clock)
                now = time.monotonic()
                if router.open_trades() and (poll_now or now - last_poll >= settings.poll_interval_s):
                    try:
                        poll()
                    except TradierError as exc:
                        log.warning("order poll failed: %s", exc)
                    last_poll, poll_now = now, False
                if not started and caught_up():
                    started = True
                    router.enforce_state(clock())  # a halt or flatten issued while the router was down
                elif started and not reconciled and not preview:
                    try:
                        reconcile()
                    except TradierError as exc:
                        log.warning("reconciliation failed (retried): %s", exc)
                    else:
                        reconciled = True
                if clock():
                    router.on_clock(clock())
                watch_deliveries(producer, router, clock() or None)
                if now - last_lease >= settings.lease_check_s:
                    lease_check()
                    last_lease = now
                if progress is not None:
                    progress(result)
                if until_idle is not None and now - last_input >= until_idle and started and not router.open_trades():
                    break
    finally:
        stream.close()
        intents_c.close()
        control.close()
        producer.flush()
    result.dead_letters += control.dead_letters
    return result
