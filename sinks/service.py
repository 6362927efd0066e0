"""`scalp sink`'s wiring: topics, the worker with its metrics and health endpoint, SIGTERM/SIGINT to flush
the batch and leave the group."""

from __future__ import annotations

import time
from typing import Any

from kafkaio.admin import TopicAdmin
from kafkaio.lifecycle import stop_on_signals
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde

from .settings import DatabaseSettings, SinkSettings
from .worker import SinkWorker, WorkerState


def run_sink(
    kafka: KafkaSettings,
    database: DatabaseSettings,
    settings: SinkSettings,
    serde: AvroSerde,
    catalog: Catalog,
    topics: list[str],
    until_idle: float | None,
) -> WorkerState:
    """Write ``topics`` into their tables until stopped or, with ``until_idle``, caught up and idle that long;
    /metrics and /healthz on ``settings.http_port`` (0: none) meanwhile."""
    TopicAdmin(kafka, catalog).create_all()
    worker = SinkWorker(kafka, database, settings, serde, catalog, topics)

    def health() -> tuple[bool, dict[str, Any]]:
        state = worker.state
        detail = {
            "status": "paused: database unavailable" if state.paused else "ok",
            "assigned": [f"{t}[{p}]" for t, p in state.assigned],
            "buffered": state.buffered,
            "rows_written": state.rows_written,
            "last_flush_age_s": round(time.monotonic() - state.last_flush, 1),
            "last_error": state.last_error,
        }
        return not state.paused, detail

    server = worker.metrics.serve(health, settings.http_host, settings.http_port)
    try:
        with stop_on_signals(worker.stop, "flushing and leaving the group"):
            worker.run(idle_exit_s=until_idle)
    finally:
        if server is not None:
            server.shutdown()
    return worker.state
