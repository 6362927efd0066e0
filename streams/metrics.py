"""Prometheus metrics of the Faust worker, read from its counters when scraped (nothing per event)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class StreamsCollector(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app  # streams.app.Streams

    def collect(self) -> Iterator[Any]:
        stats = self.app.stats
        yield CounterMetricFamily("scalp_streams_events", "Market inputs taken", value=stats.events)
        skipped = CounterMetricFamily(
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
        yield CounterMetricFamily(
            "scalp_streams_risk_inputs_refetched",
            "Risk inputs Faust handed out past (not in order), read directly from Kafka and applied in order",
            value=stats.risk_refetched,
        )
        yield CounterMetricFamily("scalp_streams_dead_letters", "Inputs sent to the DLQ", value=stats.dead_letters)
        outputs = CounterMetricFamily("scalp_streams_outputs", "Records produced", labels=["topic"])
        for topic, count in sorted(stats.outputs.items()):
            outputs.add_metric([topic], count)
        yield outputs
        yield GaugeMetricFamily("scalp_streams_held_events", "Events waiting in the merge", value=self.app.stage.held())


class StreamsMetrics:
    def __init__(self, app: Any) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StreamsCollector(app))
