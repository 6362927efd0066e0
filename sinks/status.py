"""Where the sink stands and what it refused: per-partition lag against its stored offsets, and a summary
of the dead-letter topics by reason."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from kafkaio import deadletter
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog

from .db import connect
from .settings import DatabaseSettings


@dataclass(frozen=True)
class PartitionLag:
    topic: str  # physical name
    partition: int
    stored: int  # the sink's next offset (0: nothing stored)
    end: int  # high water mark
    updated: dt.datetime | None  # when the sink last stored this partition's offset

    @property
    def lag(self) -> int:
        return max(0, self.end - self.stored)


def lag(kafka: KafkaSettings, database: DatabaseSettings, group_id: str, topics: list[str]) -> list[PartitionLag]:
    """Each partition of ``topics`` (catalog names) with the sink group's stored offset and the end offset."""
    physical = [kafka.topic(t) for t in topics]
    with connect(database) as conn:
        rows = conn.execute(
            "SELECT topic, partition, next_offset, updated_at FROM sink_offsets "
            "WHERE group_id = %s AND topic = ANY(%s)",
            (group_id, physical),
        ).fetchall()
    stored = {(t, p): (o, u) for t, p, o, u in rows}
    out: list[PartitionLag] = []
    with RangeReader(kafka, "scalp-sink-status", timeout_s=10) as reader:
        for name in physical:
            for p in reader.partitions(name):
                _, high = reader.watermarks(name, p)
                offset, updated = stored.get((name, p), (0, None))
                out.append(PartitionLag(name, p, int(offset), high, updated))
    return out


def dead_letters(kafka: KafkaSettings, catalog: Catalog, topics: list[str]) -> dict[str, Counter[str]]:
    """Dead-letter topic (physical name) -> count per reason (the ``error`` header, first 100 characters)."""
    counts: dict[str, Counter[str]] = {}
    with RangeReader(kafka, "scalp-dlq-report", timeout_s=10) as reader:
        for topic in topics:
            name = kafka.topic(catalog[topic].dlq)
            for record in reader.read(name, reader.bounds(name), 500):
                reason = (deadletter.header(record.headers, "error") or "?")[:100]
                counts.setdefault(name, Counter())[reason] += 1
    return counts
