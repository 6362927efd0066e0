"""Tradier behind the router's broker port: submissions and cancels, and account-stream events turned into
order updates for the router."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from execution.model import BrokerRejected, OrderPlan, OrderUpdate, Submitted
from execution.router import Router
from kafkaio.retry import Backoff

from .parsing import http_date_ns, is_plan, order_form, order_update
from .rest import AmbiguousSubmit, TradierError, TradierRejected

log = logging.getLogger("scalp.execution")


def stream_update(router: Router, event: Any, client: Any, clock: Callable[[], int]) -> None:
    """One account-stream event: the order (or one leg of it) it is about, as an update."""
    hit = router.by_broker_id.get(event.broker_id)
    if hit is None and event.parent_id is not None and event.parent_id in router.by_broker_id:
        # a leg whose id we have not learnt yet: the parent order tells which leg is which; the event's
        # own state is then applied (so each execution stays a fill of its own)
        trade, order_id = router.by_broker_id[event.parent_id]
        order = trade.order(order_id)
        if order is not None:
            known = order_update(client.order(event.parent_id), order.plan, "stream", event.ts or clock())
            for leg in known.legs:
                if leg.broker_id and order.legs[leg.index].broker_id is None:
                    order.legs[leg.index].broker_id = leg.broker_id
                    router.by_broker_id[leg.broker_id] = (trade, order_id)
        hit = router.by_broker_id.get(event.broker_id)
    if hit is None:
        router.unknown(event.broker_id, event.ts, "account event for an order we did not send", status=event.status)
        return
    trade, order_id = hit
    order = trade.order(order_id)
    if order is None:
        return
    ts = event.ts or clock()
    if event.broker_id == order.broker_order_id:
        legs = (event.leg(order.plan.legs[0].index, ts),) if len(order.plan.legs) == 1 else ()
        router.on_update(OrderUpdate(order_id, order.broker_order_id, event.status, ts, "stream", legs, event.reason))
        return
    index = next((i for i, leg in order.legs.items() if leg.broker_id == event.broker_id), None)
    if index is None:
        return
    router.on_update(OrderUpdate(order_id, order.broker_order_id, order.status, ts, "stream", (event.leg(index, ts),)))


class TradierPort:
    """Tradier behind the router's port. A submission whose outcome is unknown (timeout, 5xx) is looked up
    by its tag before it is sent again, so one intent never becomes two orders."""

    name = "tradier"

    def __init__(self, client: Any, preview: bool) -> None:
        self.client = client
        self.preview = preview
        self.listing: list[dict[str, Any]] = []  # today's orders as listed at start

    def list_today(self) -> None:
        self.listing = self.client.orders()

    def lookup(self, plan: OrderPlan, fresh: bool) -> str | None:
        """Today's broker order that is ``plan`` (tag, class, side, symbol), from the start listing or
        (``fresh``) a new one."""
        orders = self.client.orders() if fresh else self.listing
        found = next((o for o in orders if is_plan(o, plan)), None)
        return None if found is None else str(found["id"])

    def _ts(self, fallback: int) -> int:
        return http_date_ns(self.client.last_date) or fallback

    def submit(self, plan: OrderPlan, ts: int) -> Submitted:
        form = order_form(plan, self.preview)
        backoff = Backoff(base_s=0.5, cap_s=4.0)
        for _ in range(4):
            sent = time.time_ns()  # a measurement of our own latency, not an event time
            try:
                order = self.client.submit(form)
            except TradierRejected as exc:
                raise BrokerRejected(str(exc), self._ts(ts)) from None
            except AmbiguousSubmit as exc:
                log.warning("order %s: %s; looking it up (tag, class, side, symbol) before sending again",
                            plan.order_id, exc)  # fmt: skip
                time.sleep(backoff.next_delay())
                found = self.lookup(plan, fresh=True)
                if found is not None:
                    return Submitted(found, self._ts(ts))
                continue
            acked = time.time_ns()
            if self.preview:
                return Submitted("", self._ts(ts), status="previewed", preview=order, sent_ns=sent, acked_ns=acked)
            if str(order.get("status", "ok")) not in ("ok", "pending", "open"):
                raise BrokerRejected(str(order.get("reason_description") or order.get("status")), self._ts(ts))
            return Submitted(str(order["id"]), self._ts(ts), status="pending", sent_ns=sent, acked_ns=acked)
        raise TradierError(f"order {plan.order_id}: submission outcome unknown after 4 attempts")

    def cancel(self, broker_id: str, ts: int) -> None:
        try:
            self.client.cancel(broker_id)
        except TradierRejected as exc:  # already filled or canceled: the next update says which
            log.info("cancel %s refused: %s", broker_id, exc)
