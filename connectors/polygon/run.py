"""`scalp ingest`'s wiring: topics, the producer, the warm start from what Kafka holds, then the pipeline
until it is stopped (SIGTERM/SIGINT) or the session ends."""

from __future__ import annotations

import logging
import time

from kafkaio.admin import TopicAdmin
from kafkaio.lifecycle import run_service
from kafkaio.producer import AvroProducer
from kafkaio.reader import read_topic
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from schemas.topics import BARS_1M, INGEST_GAPS, MARKET_QUOTES, MARKET_TRADES, OPTIONS_CHAIN

from .ingest import IngestPipeline, IngestStats
from .parsing import SIMULATED_LATENCY_NS, IngestClock
from .settings import PolygonSettings

log = logging.getLogger("scalp.ingest")
WARM_TOPICS = (MARKET_TRADES, MARKET_QUOTES, BARS_1M)


def run_ingest(
    kafka: KafkaSettings,
    serde: AvroSerde,
    catalog: Catalog,
    polygon: PolygonSettings,
    symbols: list[str],
    *,
    options: bool,
    simulated: bool,
    window: tuple[int, int] | None = None,
) -> IngestStats:
    """Ingest ``symbols`` from ``polygon``'s WebSocket until stopped or the stream ends.

    ``window`` (ns): warm start from every record of that event-time window already in Kafka (a synthetic
    session run again publishes nothing twice) instead of the newest records; a window older than the
    topics keep is refused first.
    """
    admin = TopicAdmin(kafka, catalog)
    admin.create_all()
    if window is not None:
        topics = [*WARM_TOPICS, INGEST_GAPS] + ([OPTIONS_CHAIN] if options else [])
        admin.check_kept(topics, window[0], time.time_ns(), "the session")
    producer = AvroProducer(kafka, serde)
    clock = IngestClock(SIMULATED_LATENCY_NS if simulated else None)
    pipeline = IngestPipeline(polygon, symbols, producer, options=options, clock=clock, options_as_of=simulated)
    if window is not None:
        start_ns, end_ns = window
        in_window = (
            (topic, record)
            for topic in WARM_TOPICS
            for record in read_topic(kafka, serde, topic, from_ms=start_ns // 1_000_000)
            if record["ts"] < end_ns
        )
        seeded = pipeline.warm_start(in_window)
        log.info("warm start: %d records of the session window read back from Kafka", seeded)
    elif polygon.warm_start_events:
        history = (
            (topic, record)
            for topic in WARM_TOPICS
            for record in read_topic(kafka, serde, topic, tail=polygon.warm_start_events)
        )
        seeded = pipeline.warm_start(history)
        log.info("warm start: %d recent records read back from Kafka", seeded)
    pipeline.tune_gc()
    server = None
    if polygon.http_port:
        from .metrics import IngestMetrics, health

        server = IngestMetrics(pipeline).serve(lambda: health(pipeline), polygon.http_host, polygon.http_port)
    try:
        return run_service(pipeline, "draining the queue and flushing the producer")
    finally:
        if server is not None:
            server.shutdown()
