"""`scalp streams`'s wiring: topics, the Faust worker with its metrics endpoint, and the fresh start a
worker asks for when a partition's input cannot be put back in sequence."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import faust

from kafkaio.admin import TopicAdmin
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde

from .app import RESTART_ENV, Streams
from .core.pipeline import CoreParts
from .core.statecodec import StateError
from .metrics import StreamsMetrics
from .settings import StreamsSettings
from .snapshots import Snapshot, publish_new

log = logging.getLogger("scalp.streams")


def run_worker(
    kafka: KafkaSettings,
    settings: StreamsSettings,
    serde: AvroSerde,
    catalog: Catalog,
    parts: CoreParts,
    *,
    data_dir: Path,
    until_idle: float | None,
    log_level: str,
    snapshots: Sequence[Snapshot] = (),
) -> Streams:
    """Run the worker until SIGTERM/SIGINT (Faust's own handlers) or, with ``until_idle``, until idle; the
    metrics and health endpoint on ``settings.http_port`` (0: none) meanwhile. Returns the app (its stats,
    and whether it asks to start again: :func:`restart_if_asked`). ``snapshots``: the configuration it runs
    with, published to config_snapshots where the topic lacks them (stamped with this clock: a configuration
    has no venue time)."""
    TopicAdmin(kafka, catalog).create_all()
    for new in publish_new(kafka, serde, snapshots, time.time_ns()):
        log.info("config snapshot %s (%s) published", new.digest[:12], new.kind)
    app = Streams(kafka, settings, serde, catalog, parts, data_dir=data_dir)
    app.idle_exit_s = until_idle
    server = None
    if settings.http_port:

        def health() -> tuple[bool, dict[str, object]]:
            return True, {"status": "ok", "events": app.stats.events, "held": app.stage.held()}

        metrics = StreamsMetrics(app)
        app.outputs.on_output = metrics.on_output
        server = metrics.serve(health, settings.http_host, settings.http_port)
    worker = faust.Worker(app.app, loglevel=log_level, override_logging=False, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None) and app.state_failure is None:
            raise
    finally:
        if server is not None:
            server.shutdown()
    if app.state_failure is not None:
        raise StateError(app.state_failure)
    return app


def restart_if_asked(app: Streams, argv: list[str]) -> None:
    """When the worker stopped to start again (a hole in a partition's offsets that did not fill), replace
    this process with ``argv``: a fresh process starts at the committed offsets. Returns otherwise."""
    if app.restart_reason is None or app.restart_env is None:
        return
    log.warning("starting again: %s", app.restart_reason)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, RESTART_ENV: app.restart_env})  # noqa: S606 (no shell)
