"""Market records for replays: from Kafka by time range (offsets_for_times) or whole, from the tables, or
from the Parquet archive that `scalp db maintain --archive-dir` writes (sinks/archive.py).

Records come back in one deterministic order whatever the source: event time, then trades before quotes,
then symbol and sequence number (then the place in the source), so the same inputs always replay the same
way and a day replays identically from Kafka, the tables or the archive. Kafka reads stop at the end
offsets seen when the read starts; what was read is recorded per partition (first and last offset) for the
run's metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafkaio.errors import ScalpError
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import FEATURES, MARKET_QUOTES, MARKET_TRADES

MARKET = (MARKET_TRADES, MARKET_QUOTES)
FROM_FEATURES = FEATURES  # --source features: the stored feature snapshots drive setups and risk (no ticks)
SOURCES = ("auto", "kafka", "tables", "archive", FROM_FEATURES)
RANK = {MARKET_TRADES: 0, MARKET_QUOTES: 1}


class RetentionGap(ScalpError):
    """The range starts before the oldest offset Kafka still holds."""


class OffsetsError(ScalpError):
    """Offsets asked for that are no range of a market partition's log."""


class ArchiveMissing(ScalpError):
    """The archive directory asked for does not exist."""


@dataclass
class Read:
    records: list[tuple[str, dict[str, Any]]]
    offsets: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # topic -> p -> (first, last)
    source: str = "kafka"
    days: dict[str, str] = field(default_factory=dict)  # New York date -> its source (--source auto)


def order_key(topic: str, record: dict[str, Any], *place: int) -> tuple[Any, ...]:
    """The one replay order: event time, trades before quotes, symbol, sequence number, place in the source."""
    return (record["ts"], RANK.get(topic, 9), record.get("symbol") or "", record.get("seq") or 0, *place)


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
            _take(reader, serde, topic, physical, bounds, (start_ns, end_ns), items, offsets, progress)
    return Read(_order(items), offsets, "kafka")


def from_offsets(
    kafka: KafkaSettings,
    serde: AvroSerde,
    ranges: dict[str, dict[int, tuple[int, int]]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Read:
    """Exactly the records at ``ranges`` (topic -> partition -> first and last offset, inclusive: what a run
    recorded in run.json), kept within ``[start_ns, end_ns)`` as that run kept them."""
    items: list[tuple[tuple[Any, ...], str, dict[str, Any]]] = []
    offsets: dict[str, dict[int, tuple[int, int]]] = {}
    with RangeReader(kafka, "scalp-replay") as reader:
        for topic, parts in ranges.items():
            if topic not in MARKET:
                raise OffsetsError(f"{topic}: offsets are replayed of the market topics only ({', '.join(MARKET)})")
            physical = kafka.topic(topic)
            bounds: dict[int, tuple[int, int]] = {}
            for p, (first, last) in sorted(parts.items()):
                low, high = reader.watermarks(physical, p)
                if not 0 <= first <= last:
                    raise OffsetsError(f"{topic}[{p}]: {first}-{last} is not a range of offsets")
                if first < low:
                    raise RetentionGap(
                        f"{topic}[{p}]: offsets before {low} were deleted by retention; {first}-{last} is gone from "
                        "Kafka (replay the range by time from the tables or the archive)"
                    )
                if last >= high:
                    raise OffsetsError(f"{topic}[{p}]: offset {last} is past the end of the partition ({high - 1})")
                bounds[p] = (first, last + 1)
            _take(reader, serde, topic, physical, bounds, (start_ns, end_ns), items, offsets, progress)
    return Read(_order(items), offsets, "kafka")


def _take(
    reader: RangeReader,
    serde: AvroSerde,
    topic: str,
    physical: str,
    bounds: dict[int, tuple[int, int]],
    window: tuple[int | None, int | None],
    items: list[tuple[tuple[Any, ...], str, dict[str, Any]]],
    offsets: dict[str, dict[int, tuple[int, int]]],
    progress: Callable[[int], None] | None,
) -> None:
    """Decode the records of ``bounds`` within the time window into ``items``, recording the offsets read."""
    start_ns, end_ns = window
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
        items.append((order_key(topic, record, p, offset), topic, record))
        if progress is not None and len(items) % 50_000 == 0:
            progress(len(items))


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
            items.append((order_key(topic, record, 0, n), topic, record))
    return Read(_order(items), {}, "tables")


def from_archive(root: Path, start_ns: int | None, end_ns: int | None, topics: tuple[str, ...] = MARKET) -> Read:
    """Records of the archive at ``root`` with ``start_ns <= ts < end_ns``: only the date partitions the range
    touches are opened (a New York date holds its whole session)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from schemas.arrow import UTC_NS, to_records
    from sinks.archive import legacy_files, session_date

    if not root.is_dir():
        raise ArchiveMissing(f"no archive at {root} (the directory `scalp db maintain --archive-dir` writes)")
    old = legacy_files(root)
    if old:
        raise ArchiveMissing(
            f"the archive at {root} holds {sum(len(f) for f in old.values())} files of the layout before Hive "
            f"partitions; rewrite them first: scalp db archive-migrate --archive-dir {root}"
        )
    partitioning = ds.partitioning(pa.schema([("symbol", pa.string()), ("date", pa.date32())]), flavor="hive")
    items: list[tuple[tuple[Any, ...], str, dict[str, Any]]] = []
    for topic in topics:
        base = root / topic
        if not base.is_dir():
            continue
        dataset = ds.dataset(base, format="parquet", partitioning=partitioning, exclude_invalid_files=False)
        where = None
        if start_ns is not None:
            where = (ds.field("date") >= session_date(start_ns)) & (ds.field("ts") >= pa.scalar(start_ns, UTC_NS))
        if end_ns is not None:
            upper = (ds.field("date") <= session_date(end_ns - 1)) & (ds.field("ts") < pa.scalar(end_ns, UTC_NS))
            where = upper if where is None else where & upper
        table = dataset.to_table(filter=where)
        for n, record in enumerate(to_records(table.drop_columns(["date"]))):
            items.append((order_key(topic, record, 0, n), topic, record))
    return Read(_order(items), {}, "archive")
