"""The sink's series (through the one metrics interface, kafkaio.metrics)."""

from __future__ import annotations

from kafkaio.metrics import ProcessMetrics


class SinkMetrics(ProcessMetrics):
    def __init__(self) -> None:
        super().__init__("sink")
        self.rows = self.counter("scalp_sink_rows_written", "Rows written, per table", ["table"])
        self.batch_seconds = self.histogram(
            "scalp_sink_batch_seconds",
            "Time to write one batch and its offsets",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.dlq = self.counter("scalp_sink_dead_letters", "Records sent to the dead-letter queue", ["table"])
        self.fast_rows = self.counter("scalp_sink_fast_path_rows", "Rows written through the columnar fast path")
        self.fallbacks = self.counter(
            "scalp_sink_fast_path_fallbacks", "Batches the fast path refused (written row by row)"
        )
        self.duplicates = self.counter("scalp_sink_duplicates_skipped", "Rows skipped by the natural-key guard")
        self.last_write = self.gauge(
            "scalp_sink_last_write_timestamp_seconds", "Wall-clock time of the last batch committed"
        )
