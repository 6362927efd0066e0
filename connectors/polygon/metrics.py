"""`scalp ingest`'s series (through the one metrics interface, kafkaio.metrics), read from the pipeline's
counters when scraped: the hot path pays nothing for them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from kafkaio.metrics import ProcessMetrics, counter_families, counter_family, gauge_family
from streams.core.sessions import Calendar

from .ingest import IngestPipeline


class IngestMetrics(ProcessMetrics):
    def __init__(self, pipeline: IngestPipeline, calendar: Calendar | None = None) -> None:
        super().__init__("ingest")
        self.pipeline = pipeline
        self.calendar = calendar or Calendar().load()
        self.collect(self._families)

    def regular_hours(self, now_ns: int) -> bool:
        """Whether NYSE's regular session is open at this wall-clock time (holidays and half days included):
        when the alert on missing ticks applies."""
        found = self.calendar.at(now_ns)
        return found is not None and found[1] == "rth"

    def _families(self) -> Iterator[Metric]:
        p = self.pipeline
        s = p.stats
        yield from counter_families(
            (
                ("scalp_ingest_frames", "WebSocket frames received", s.frames),
                ("scalp_ingest_events", "Market events received (trades, quotes, bars)", s.events),
                ("scalp_ingest_duplicates", "Events dropped as already published", s.duplicates),
                ("scalp_ingest_dead_letters", "Events sent to the dead-letter queue", s.dead_letters),
                ("scalp_ingest_gaps", "Gaps detected (a reconnect or a silence)", s.gaps),
                ("scalp_ingest_gaps_unrepaired", "Gaps the REST backfill could not fill", s.unrepaired),
                ("scalp_ingest_events_recovered", "Events recovered by gap repair", s.repaired),
                ("scalp_ingest_option_rows", "Options chain rows published", s.options),
                ("scalp_ingest_ignored", "Events of no subscribed kind or symbol", s.ignored),
                ("scalp_ingest_connections", "WebSocket connections made", p.stream.connections),
            )
        )
        published = counter_family("scalp_ingest_published", "Records published, per topic", labels=["topic"])
        for topic, count in sorted(s.published.items()):
            published.add_metric([topic], count)
        yield published
        yield gauge_family("scalp_ingest_queue_frames", "Frames received and not yet processed", p.queue.qsize())
        venue = p.venue.venue_ns
        if venue is not None:
            yield gauge_family(
                "scalp_ingest_last_event_timestamp_seconds", "Venue time of the latest event taken", venue / 1e9
            )
        yield gauge_family(
            "scalp_market_regular_hours",
            "1 while NYSE's regular session is open (wall clock, exchange calendar)",
            1 if self.regular_hours(time.time_ns()) else 0,
        )


def health(pipeline: IngestPipeline) -> tuple[bool, dict[str, Any]]:
    stats = pipeline.stats
    connections = pipeline.stream.connections
    detail = {
        "status": "ok" if connections else "connecting",
        "connections": connections,
        "events": stats.events,
        "gaps": stats.gaps,
        "unrepaired": stats.unrepaired,
        "dead_letters": stats.dead_letters,
    }
    return connections > 0, detail
