"""`scalp execute`'s series (through the one metrics interface, kafkaio.metrics): the router's counters and
trading state read when scraped; signal-to-acknowledgement and signal-to-fill delays observed as they happen
(venue event time of the signal to the broker's time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from execution.guard import TradingState
from kafkaio.metrics import ProcessMetrics, counter_families, counter_family, gauge_family


class ExecuteMetrics(ProcessMetrics):
    def __init__(self, heartbeat: Any) -> None:
        super().__init__("execute")
        self.heartbeat = heartbeat  # scalp.cli_execute.Heartbeat: the router's last pass
        delay = self.histogram(
            "scalp_execute_delay_seconds",
            "Signal venue time to the order's acknowledgement by the broker (ack), or to a fill (fill)",
            ["stage"],
        )
        self._delay = {stage: delay.labels(stage) for stage in ("ack", "fill")}
        self.collect(self._families)

    def observe(self, stage: str, seconds: float) -> None:
        """The router's delay observer (RouterStats.observe)."""
        child = self._delay.get(stage)
        if child is not None:
            child.observe(seconds)

    def _families(self) -> Iterator[Metric]:
        beat = self.heartbeat
        yield gauge_family(
            "scalp_execute_loop_age_seconds", "Time since the router's loop last turned", time.monotonic() - beat.last
        )
        result = beat.result
        if result is None:
            return
        router = result.router
        s = router.stats
        yield from counter_families(
            (
                ("scalp_execute_intents", "Order intents taken", s.intents),
                ("scalp_execute_orders_sent", "Orders sent to the broker", s.sent),
                ("scalp_execute_fills", "Fills received", s.fills),
                ("scalp_execute_trades_closed", "Trades closed (ledger rows)", s.closed),
                ("scalp_execute_time_stops", "Trades closed by their time stop", s.time_stops),
                ("scalp_execute_unknown_events", "Broker events of orders not ours", s.unknown_events),
                ("scalp_execute_dead_letters", "Inputs sent to the dead-letter queue", result.dead_letters),
            )
        )
        refused = counter_family("scalp_execute_orders_refused", "Orders not sent or refused, by who", labels=["by"])
        refused.add_metric(["limits"], s.refused)
        refused.add_metric(["invalid"], s.invalid)
        refused.add_metric(["broker"], s.rejected)
        yield refused
        state = gauge_family("scalp_execute_trading_state", "1 for the router's trading state", labels=["state"])
        current = router.guard.state if router.guard is not None else TradingState.ACTIVE
        for candidate in TradingState:
            state.add_metric([candidate.value], 1 if candidate is current else 0)
        yield state
        open_trades = len(router.open_trades())
        yield gauge_family("scalp_execute_open_trades", "Trades with an open position or order", open_trades)
