"""Prometheus metrics of the sink and an HTTP endpoint with /metrics and /healthz."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rows = Counter("scalp_sink_rows_written", "Rows written per table", ["table"], registry=self.registry)
        self.batch_seconds = Histogram(
            "scalp_sink_batch_seconds",
            "Time to write one batch and its offsets",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lag = Gauge(
            "scalp_sink_consumer_lag", "Messages not yet stored", ["topic", "partition"], registry=self.registry
        )
        self.dlq = Counter(
            "scalp_sink_dead_letters", "Records sent to the dead-letter queue", ["table"], registry=self.registry
        )
        self.fast_rows = Counter(
            "scalp_sink_fast_path_rows", "Rows written through the columnar fast path", registry=self.registry
        )
        self.fallbacks = Counter(
            "scalp_sink_fast_path_fallbacks",
            "Batches the fast path refused (written row by row)",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "scalp_sink_duplicates_skipped", "Rows skipped by the natural-key guard", registry=self.registry
        )
