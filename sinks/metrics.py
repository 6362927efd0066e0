"""Prometheus metrics of the sink and an HTTP endpoint with /metrics and /healthz."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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


def serve(
    metrics: SinkMetrics, health: Callable[[], tuple[bool, dict[str, Any]]], host: str, port: int
) -> ThreadingHTTPServer:
    """Serve /metrics (Prometheus text) and /healthz (JSON; 200 when healthy, 503 otherwise) in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, status, kind = generate_latest(metrics.registry), 200, "text/plain; version=0.0.4"
            elif self.path.startswith("/healthz"):
                ok, detail = health()
                body, status, kind = json.dumps(detail).encode(), 200 if ok else 503, "application/json"
            else:
                body, status, kind = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="sink-http", daemon=True).start()
    return server
