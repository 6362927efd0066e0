"""The Faust worker's series (through the one metrics interface, kafkaio.metrics): read from its counters
when scraped, except the venue-time-to-output delay, observed per output record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from kafkaio.metrics import ProcessMetrics, counter_family, gauge_family
from schemas.topics import FEATURES, ORDER_INTENTS, RISK_DAY, RISK_DECISIONS, SIGNALS

DELAYED = (FEATURES, SIGNALS, RISK_DECISIONS, ORDER_INTENTS)
LIMITS = ("daily_loss", "max_drawdown", "max_trades")  # the risk engine's breach flags


class StreamsMetrics(ProcessMetrics):
    def __init__(self, app: Any) -> None:
        super().__init__("streams")
        self.app = app  # streams.app.Streams
        self.risk_day: dict[str, Any] | None = None
        delay = self.histogram(
            "scalp_streams_output_delay_seconds",
            "Venue event time of an output (the tick or signal behind it) to the wall-clock time it was produced",
            ["topic"],
        )
        self._delay = {topic: delay.labels(topic) for topic in DELAYED}
        self.collect(self._families)

    def on_output(self, topic: str, record: dict[str, Any]) -> None:
        """Called by the worker's outputs for each record it produces."""
        child = self._delay.get(topic)
        if child is not None:
            ts = record.get("ts")
            if type(ts) is int:
                child.observe((time.time_ns() - ts) / 1e9)
        elif topic == RISK_DAY:
            self.risk_day = record

    def _families(self) -> Iterator[Metric]:
        stats = self.app.stats
        yield counter_family("scalp_streams_events", "Market inputs taken", stats.events)
        skipped = counter_family(
            "scalp_streams_inputs_not_applied", "Inputs not applied to the features, by reason", labels=["reason"]
        )
        counters = list(self.app.stage.counters().values())
        skipped.add_metric(["already_in_state"], stats.skipped)
        skipped.add_metric(["redelivered"], stats.redelivered)
        skipped.add_metric(["ahead_of_position"], stats.ahead)
        skipped.add_metric(["left_at_rebalance"], stats.stale)
        skipped.add_metric(["late"], sum(c.late_events for c in counters))
        skipped.add_metric(["outside_session"], sum(c.outside_session for c in counters))
        skipped.add_metric(["ignored_trade"], sum(c.ignored_trades for c in counters))
        yield skipped
        yield counter_family(
            "scalp_streams_risk_inputs_refetched",
            "Risk inputs Faust handed out past (not in order), read directly from Kafka and applied in order",
            stats.risk_refetched,
        )
        yield counter_family("scalp_streams_dead_letters", "Inputs sent to the DLQ", stats.dead_letters)
        outputs = counter_family("scalp_streams_outputs", "Records produced", labels=["topic"])
        for topic, count in sorted(stats.outputs.items()):
            outputs.add_metric([topic], count)
        yield outputs
        yield gauge_family("scalp_streams_held_events", "Events waiting in the merge", self.app.stage.held())
        market = getattr(self.app, "market", None)
        if market is not None:
            self.set_lag(market.lags())
        day = self.risk_day
        if day is not None:
            yield from _risk_day(day)


def _risk_day(day: dict[str, Any]) -> Iterator[Metric]:
    """The day's risk figures, as of the last risk_day record this worker produced."""
    yield gauge_family("scalp_risk_day_trades_taken", "Entries approved today", day["trades_taken"])
    yield gauge_family("scalp_risk_day_open_positions", "Open positions now", day.get("open_positions", 0))
    yield gauge_family("scalp_risk_day_realized_r", "Realised R today", day["r_realized"])
    yield gauge_family("scalp_risk_day_max_drawdown_r", "Largest drop of realised R today", day["max_drawdown"])
    breached = gauge_family("scalp_risk_day_limit_breached", "1 when today's limit is breached", labels=["limit"])
    flags = set(day.get("breach_flags") or [])
    for flag in sorted(flags | set(LIMITS)):
        breached.add_metric([flag], 1 if flag in flags else 0)
    yield breached
    yield gauge_family("scalp_risk_day_timestamp_seconds", "Venue time of the last risk_day update", day["ts"] / 1e9)
