"""The one metrics interface. Every long-running process (ingest, streams, sink, execute) makes one
:class:`ProcessMetrics`: a prometheus_client registry of its own with the process, platform and GC collectors
(memory, CPU, open files, start time), ``scalp_build_info``, and the process's series, declared through it.
:meth:`ProcessMetrics.serve` exposes the registry through prometheus_client's own WSGI app (content
negotiation, OpenMetrics, gzip) at ``/metrics`` and a JSON health check at ``/healthz``.

Names follow the Prometheus conventions: ``scalp_<process>_<what>_<unit>``, base units (seconds, not
milliseconds), counters end in ``_total`` (prometheus_client appends it), labels only of bounded sets (topic,
partition, reason, state; never a symbol or an order id). Counters a hot path keeps as plain integers are read
at scrape time by a collector (:meth:`ProcessMetrics.collect`), so nothing is paid per event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]
# venue time to output (tick to feature, signal to order acknowledgement, signal to fill): 1 ms .. 1 min
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _version() -> str:
    try:
        return metadata.version("scalp-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Scrape(Collector):
    """Series computed when scraped, from counters the process keeps itself."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self.produce = produce

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self.produce()
        except Exception:  # a scrape must not take the process down; the series is missing this once
            log.exception("metrics: a collector failed")


class ProcessMetrics:
    """One process's metrics (``process``: ingest, streams, sink or execute)."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        info = Gauge(
            "scalp_build_info", "The running scalp-pipeline process (always 1)", ["process", "version"],
            registry=self.registry,
        )  # fmt: skip
        info.labels(process, _version()).set(1)
        self.lag = self.gauge(
            "scalp_consumer_lag_messages",
            "Records of a partition not yet taken (high water mark minus the next offset)",
            ["topic", "partition"],
        )
        self._lag_keys: set[tuple[str, str]] = set()

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def histogram(
        self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return Histogram(name, doc, list(labels), registry=self.registry, buckets=tuple(buckets))

    def collect(self, produce: Callable[[], Iterable[Metric]]) -> None:
        """Series made at scrape time by ``produce`` (see :func:`counter_family`, :func:`gauge_family`)."""
        self.registry.register(_Scrape(produce))

    def set_lag(self, lags: Iterable[tuple[str, int, int]]) -> None:
        """(topic, partition, lag) of every partition the process reads now; partitions it no longer reads
        are removed."""
        seen = set()
        for topic, partition, lag in lags:
            key = (topic, str(partition))
            seen.add(key)
            self.lag.labels(*key).set(max(lag, 0))
        for labels in self._lag_keys - seen:
            self.lag.remove(*labels)
        self._lag_keys = seen

    def serve(self, health: Health, host: str, port: int) -> MetricsServer | None:
        """/metrics and /healthz on host:port from a daemon thread (None when ``port`` is 0)."""
        if not port:
            return None
        return MetricsServer(self.registry, health, host, port, self.process)


def counter_family(name: str, doc: str, value: float | None = None, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, labels=list(labels) if labels else None)


def counter_families(rows: Iterable[tuple[str, str, float]]) -> Iterator[CounterMetricFamily]:
    """One unlabelled counter per (name, help, value)."""
    for name, doc, value in rows:
        yield counter_family(name, doc, value)


def gauge_family(name: str, doc: str, value: float | None = None, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=list(labels) if labels else None)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class MetricsServer:
    """prometheus_client's exposition at /metrics, the health check at /healthz (200 healthy, 503 not)."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int, name: str) -> None:
        exposition = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path.startswith("/healthz"):
                ok, detail = health()
                body = json.dumps(detail).encode()
                status = "200 OK" if ok else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            if path in ("/metrics", "/"):
                return exposition(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]

        self.server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"{name}-metrics", daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
