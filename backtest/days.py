"""Which source holds each day of a replay (``--source auto``): Kafka, else the tables, else the archive.

Ticks stay in Kafka for days, in the tables for weeks, and after that only in the Parquet archive. Each
source holds whole New York session dates from its first one on:

- Kafka: the dates after the first record of each partition whose start retention already deleted (that
  date may be cut short), the latest of those; a partition never cut holds everything it was sent;
- the tables: the date of their oldest tick (`db maintain` drops whole sessions);
- the archive: the dates it has a partition for.

A day goes to the first source that holds it; a day none holds is read from nothing and said so. The run
records the source of every day (``days`` in run.json).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafkaio.errors import RetryableError
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from sinks.archive import NEW_YORK, day_bounds, session_date

from .sources import MARKET, Read, _order, from_archive, from_kafka, from_tables

log = logging.getLogger(__name__)
NONE = "none"


@dataclass(frozen=True)
class Holdings:
    kafka: tuple[dt.date, dt.date] | None  # (first complete date, last date) Kafka holds
    tables: tuple[dt.date, dt.date] | None
    archive: frozenset[dt.date]

    def source_of(self, day: dt.date) -> str:
        for name, span in (("kafka", self.kafka), ("tables", self.tables)):
            if span is not None and span[0] <= day:
                return name
        return "archive" if day in self.archive else NONE

    def span(self) -> tuple[dt.date, dt.date] | None:
        """The first and last date any source holds."""
        firsts = [s[0] for s in (self.kafka, self.tables) if s] + ([min(self.archive)] if self.archive else [])
        lasts = [s[1] for s in (self.kafka, self.tables) if s] + ([max(self.archive)] if self.archive else [])
        return (min(firsts), max(lasts)) if firsts else None


def kafka_span(partitions: list[tuple[bool, dt.date, dt.date]]) -> tuple[dt.date, dt.date] | None:
    """(first complete date, last date) of the market partitions, each (retention cut its start, date of its
    first record, date of its last). A partition whose start is cut holds whole only the dates after its
    first record's; one never cut holds everything it was sent, so it bounds nothing."""
    if not partitions:
        return None
    cut = [first + dt.timedelta(days=1) for trimmed, first, _ in partitions if trimmed]
    begins = max(cut) if cut else min(first for _, first, _ in partitions)
    ends = max(last for _, _, last in partitions)
    return (begins, ends) if begins <= ends else None


def kafka_holdings(kafka: KafkaSettings, topics: tuple[str, ...]) -> tuple[dt.date, dt.date] | None:
    partitions: list[tuple[bool, dt.date, dt.date]] = []
    with RangeReader(kafka, "scalp-replay-days") as reader:
        for topic in topics:
            physical = kafka.topic(topic)
            for p in reader.partitions(physical):
                low, high = reader.watermarks(physical, p)
                if high <= low:
                    continue
                head, tail = reader.first(physical, p, low), reader.first(physical, p, high - 1)
                if head is None or tail is None:
                    continue
                first, last = (session_date(r.timestamp_ms * 1_000_000) for r in (head, tail))
                partitions.append((low > 0, first, last))
    return kafka_span(partitions)


def table_holdings(conn: Any, topics: tuple[str, ...]) -> tuple[dt.date, dt.date] | None:
    spans = []
    for topic in topics:
        # on ts (indexed; chunks and partitions are by it), not ts_ns
        row = conn.execute(f"SELECT min(ts), max(ts) FROM {topic}").fetchone()  # noqa: S608
        if row and row[0] is not None:
            spans.append((row[0].astimezone(NEW_YORK).date(), row[1].astimezone(NEW_YORK).date()))
    if not spans:
        return None
    return max(s[0] for s in spans), max(s[1] for s in spans)


def archive_dates(root: Path | None, topics: tuple[str, ...]) -> frozenset[dt.date]:
    if root is None:
        return frozenset()
    found = set()
    for topic in topics:
        for directory in (root / topic).glob("symbol=*/date=*"):
            if any(directory.glob("*.parquet")):
                found.add(dt.date.fromisoformat(directory.name.removeprefix("date=")))
    return frozenset(found)


def read_auto(
    kafka: KafkaSettings,
    serde: Any,
    connect: Callable[[], Any],
    archive_dir: Path | None,
    start_ns: int | None,
    end_ns: int | None,
    topics: tuple[str, ...] = MARKET,
    progress: Callable[[int], None] | None = None,
) -> Read:
    """The records of the range, each day from the first source that holds it, in the one replay order. A
    database that cannot be reached holds nothing (said in the log): Kafka and the archive still serve."""
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(connect())
        except RetryableError as exc:
            log.warning("replay: %s; the days the tables hold are read from Kafka or the archive", exc)
            conn = None
        table_span = table_holdings(conn, topics) if conn is not None else None
        holdings = Holdings(kafka_holdings(kafka, topics), table_span, archive_dates(archive_dir, topics))
        span = holdings.span()
        if span is None:
            return Read([], {}, "auto", {})
        first = session_date(start_ns) if start_ns is not None else span[0]
        last = session_date(end_ns - 1) if end_ns is not None else span[1]
        days: dict[str, str] = {}
        items: list[tuple[tuple[Any, ...], str, dict[str, Any]]] = []
        offsets: dict[str, dict[int, tuple[int, int]]] = {}
        day = first
        while day <= last:
            source = holdings.source_of(day)
            days[day.isoformat()] = source
            lo, hi = day_bounds(day)
            lo, hi = max(lo, start_ns) if start_ns is not None else lo, min(hi, end_ns) if end_ns is not None else hi
            read: Read | None = None
            if source == "kafka":
                read = from_kafka(kafka, serde, lo, hi, topics, progress)
                for topic, parts in read.offsets.items():
                    offsets[topic] = _merge(offsets.get(topic, {}), parts)
            elif source == "tables" and conn is not None:
                read = from_tables(conn, lo, hi, topics)
            elif source == "archive" and archive_dir is not None:
                read = from_archive(archive_dir, lo, hi, topics)
            if read is not None:
                items += [((r["ts"], n), t, r) for n, (t, r) in enumerate(read.records, len(items))]
            day += dt.timedelta(days=1)
    return Read(_order(items), offsets, "auto", days)


def _merge(seen: dict[int, tuple[int, int]], new: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """Per partition, the first and last offset read over several days."""
    out = dict(seen)
    for p, (first, last) in new.items():
        out[p] = (min(first, out[p][0]), max(last, out[p][1])) if p in out else (first, last)
    return out
