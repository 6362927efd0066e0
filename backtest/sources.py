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

from confluent_kafka import Consumer, TopicPartition

from kafkaio.errors import ScalpError
from kafkaio.reader import drain
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde

MARKET = ("market_trades", "market_quotes")
RANK = {"market_trades": 0, "market_quotes": 1}


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
    consumer = Consumer(
        {**kafka.client_config(), "group.id": "scalp-replay", "enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        for topic in topics:
            physical = kafka.topic(topic)
            meta = consumer.list_topics(physical, timeout=30)
            if physical not in meta.topics or meta.topics[physical].error is not None:
                continue
            starts: list[TopicPartition] = []
            ends: dict[int, int] = {}
            for p in sorted(meta.topics[physical].partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=30)
                start = low
                if start_ns is not None:
                    found = consumer.offsets_for_times([TopicPartition(physical, p, start_ns // 1_000_000)], timeout=30)
                    start = high if found[0].offset < 0 else found[0].offset
                    gone = low > 0 and start <= low and _earliest_ts(consumer, physical, p, low) > start_ns
                    if gone:
                        raise RetentionGap(
                            f"{topic}[{p}]: offsets before {low} were deleted by retention, so the range start is "
                            "gone from Kafka; replay from the tables instead (--source tables)"
                        )
                if start < high:
                    starts.append(TopicPartition(physical, p, start))
                    ends[p] = high
            if not starts:
                continue
            consumer.assign(starts)
            for p, offset, value in drain(consumer, physical, ends, 5000):
                if value is None:
                    continue
                record = serde.decode(value, topic)
                ts = record["ts"]
                if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts >= end_ns):
                    continue
                first, _ = offsets.setdefault(topic, {}).get(p, (offset, offset))
                offsets[topic][p] = (first, offset)
                items.append(((ts, RANK.get(topic, 9), p, offset), topic, record))
                if progress is not None and len(items) % 50_000 == 0:
                    progress(len(items))
            consumer.unassign()
    finally:
        consumer.close()
    return Read(_order(items), offsets, "kafka")


def _earliest_ts(consumer: Consumer, physical: str, partition: int, low: int) -> int:
    """Event time of the oldest message still held (ms -> ns), to tell retention from an empty range."""
    consumer.assign([TopicPartition(physical, partition, low)])
    msgs = consumer.consume(1, timeout=10)
    consumer.unassign()
    if msgs and msgs[0].error() is None:
        return int(msgs[0].timestamp()[1]) * 1_000_000
    return 0


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
