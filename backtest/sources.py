"""Market records for replays: from Kafka by time range (offsets_for_times) or whole, or from the tables.

Records come back in one deterministic order: event time, then trades before quotes, then their place
in the source (partition and offset, or the table's natural key), so the same inputs always replay the
same way. Kafka reads stop at the end offsets seen when the read starts; what was read is recorded per
partition (first and last offset) for the run's metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafkaio.errors import ScalpError
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import MARKET_QUOTES, MARKET_TRADES

MARKET = (MARKET_TRADES, MARKET_QUOTES)
RANK = {MARKET_TRADES: 0, MARKET_QUOTES: 1}


class RetentionGap(ScalpError):
    """The range starts before the oldest offset Kafka still holds."""


@dataclass
class Read:
    records: list[tuple[str, dict[str, Any]]]
    offsets: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # topic -> p -> (first, last)
    source: str = "kafka"


def _order(items: list[tuple[tuple[Any, ...], str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    items.sort(key=lambda x: x[0])
    return [(topic, record) for _, topic, record in items]


def from_kafka(
    kafka: KafkaSettings,
    serde: AvroSerde,
    start_ns: int | None,
    end_ns: int | None,
    topics: tuple[str, ...] = MARKET,
    progress: Callable[[int], None] | None = None,
) -> Read:
    """Records with ``start_ns <= ts < end_ns`` (None: unbounded) of ``topics``."""
    items: list[tuple[tuple[Any, ...], str, dict[str, Any]]] = []
    offsets: dict[str, dict[int, tuple[int, int]]] = {}
    with RangeReader(kafka, "scalp-replay") as reader:
        for topic in topics:
            physical = kafka.topic(topic)
            bounds: dict[int, tuple[int, int]] = {}
            for p in reader.partitions(physical):
                low, high = reader.watermarks(physical, p)
                start = low
                if start_ns is not None:
                    found = reader.offset_for_time(physical, p, start_ns // 1_000_000)
                    start = high if found < 0 else found
                    if low > 0 and start <= low and _earliest_ts(reader, physical, p, low) > start_ns:
                        raise RetentionGap(
                            f"{topic}[{p}]: offsets before {low} were deleted by retention, so the range start is "
                            "gone from Kafka; replay from the tables instead (--source tables)"
                        )
                if start < high:
                    bounds[p] = (start, high)
            for msg in reader.read(physical, bounds, 5000):
                if msg.value is None:
                    continue
                record = serde.decode(msg.value, topic)
                ts = record["ts"]
                if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts >= end_ns):
                    continue
                p, offset = msg.partition, msg.offset
                first, _ = offsets.setdefault(topic, {}).get(p, (offset, offset))
                offsets[topic][p] = (first, offset)
                items.append(((ts, RANK.get(topic, 9), p, offset), topic, record))
                if progress is not None and len(items) % 50_000 == 0:
                    progress(len(items))
    return Read(_order(items), offsets, "kafka")


def _earliest_ts(reader: RangeReader, physical: str, partition: int, low: int) -> int:
    """Event time of the oldest message still held (ms -> ns), to tell retention from an empty range."""
    found = reader.first(physical, partition, low)
    return found.timestamp_ms * 1_000_000 if found is not None else 0


def from_tables(conn: Any, start_ns: int | None, end_ns: int | None, topics: tuple[str, ...] = MARKET) -> Read:
    """Records of the tables named like the topics, ``start_ns <= ts < end_ns`` (ts_ns holds the ns)."""
    items: list[tuple[tuple[Any, ...], str, dict[str, Any]]] = []
    lo = start_ns if start_ns is not None else -(1 << 62)
    hi = end_ns if end_ns is not None else 1 << 62
    for topic in topics:
        cur = conn.execute(
            f"SELECT * FROM {topic} WHERE ts_ns >= %s AND ts_ns < %s ORDER BY ts_ns, symbol, seq",  # noqa: S608
            (lo, hi),
        )
        names = [d.name for d in cur.description]
        for n, row in enumerate(cur):
            record = dict(zip(names, row, strict=True))
            record["ts"] = record.pop("ts_ns")
            items.append(((record["ts"], RANK.get(topic, 9), 0, n), topic, record))
    return Read(_order(items), {}, "tables")
