"""The one range reader: partitions of a topic from an offset or an event time up to their current end.

:class:`RangeReader` is a consumer that belongs to no group's commits. It finds where each partition
starts (its log start, the first record at or after a time, or a tail) and where it ends (the high water
mark when the read starts: records produced meanwhile are not waited for), then yields
:class:`Record` values in partition order until every partition reached its end. Replays, the router's
read-back of its outputs, the dead-letter report, the streams worker's gap filling, ``scalp topics
list`` and the demo's probes all read through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from schemas.serde import AvroSerde

from . import clients
from .errors import RetryableError
from .retry import Backoff, retry
from .settings import KafkaSettings

_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TRANSPORT,
}


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message as read: where it lives, its bytes and headers, its timestamp (venue time, ms)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, Any], ...]
    timestamp_ms: int


T = TypeVar("T")
Bounds = Mapping[int, tuple[int, int]]  # partition -> (first offset, end offset exclusive)


class RangeReader:
    """Reads partitions of physical topics by offset range; use as a context manager (closes the consumer)."""

    def __init__(self, kafka: KafkaSettings, group: str, timeout_s: float = 30.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self.consumer = clients.consumer(kafka, group, eof=True, quiet=True)

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.consumer.close()

    # --- where partitions start and end --------------------------------------------------------------

    def partitions(self, physical: str) -> list[int]:
        """The topic's partitions (empty when it does not exist)."""
        try:
            meta = self.consumer.list_topics(physical, timeout=self.timeout_s)
        except KafkaException as exc:
            raise RetryableError(f"Kafka at {self.kafka.bootstrap_servers} unreachable: {exc}") from exc
        topic = meta.topics.get(physical)
        if topic is None or topic.error is not None:
            return []
        return sorted(topic.partitions)

    def watermarks(self, physical: str, partition: int) -> tuple[int, int]:
        """(log start, high water mark), retrying the transient errors of a new or moving partition."""
        tp = TopicPartition(physical, partition)

        def call() -> tuple[int, int]:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=self.timeout_s)
            return int(low), int(high)

        return self._transient(call, f"offsets of {physical}[{partition}]")

    def offset_for_time(self, physical: str, partition: int, ms: int) -> int:
        """Offset of the first record with a timestamp >= ``ms`` (-1: none)."""
        tp = TopicPartition(physical, partition, ms)
        return self._transient(
            lambda: int(self.consumer.offsets_for_times([tp], timeout=self.timeout_s)[0].offset),
            f"offset for time of {physical}[{partition}]",
        )

    def bounds(
        self, physical: str, *, from_ms: int | None = None, tail: int | None = None
    ) -> dict[int, tuple[int, int]]:
        """Partitions with something to read and their (start, end) offsets.

        ``from_ms``: each partition from its first record at or after that time. ``tail``: at most the last
        ``tail`` records of each. Neither: from the log start.
        """
        out: dict[int, tuple[int, int]] = {}
        for p in self.partitions(physical):
            low, high = self.watermarks(physical, p)
            start = low if tail is None else max(low, high - tail)
            if from_ms is not None:
                found = self.offset_for_time(physical, p, from_ms)
                start = high if found < 0 else max(start, found)
            if start < high:
                out[p] = (start, high)
        return out

    # --- reading --------------------------------------------------------------------------------------

    def read(self, physical: str, bounds: Bounds, batch: int = 1000) -> Iterator[Record]:
        """Records of ``physical`` within ``bounds``; a partition is done at its end offset or its end of log
        (offsets missing from the log, by compaction or retention, are skipped)."""
        if not bounds:
            return
        self.consumer.assign([TopicPartition(physical, p, start) for p, (start, _) in bounds.items()])
        remaining = set(bounds)
        try:
            while remaining:
                for msg in self.consumer.consume(batch, timeout=1.0):
                    err = msg.error()
                    p = msg.partition() or 0
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(p)
                            continue
                        raise RetryableError(f"reading {physical}: {err}")
                    offset = msg.offset() or 0
                    end = bounds[p][1] if p in bounds else 0
                    if p not in remaining or offset >= end:
                        remaining.discard(p)
                        continue
                    if offset >= end - 1:
                        remaining.discard(p)
                    yield _record(msg)
        finally:
            self.consumer.unassign()

    def first(self, physical: str, partition: int, offset: int, timeout_s: float = 10.0) -> Record | None:
        """The record at (or the first after) ``offset``, or None when none arrives within ``timeout_s``."""
        self.consumer.assign([TopicPartition(physical, partition, offset)])
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                msg = self.consumer.poll(min(1.0, timeout_s))
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return None
                    continue
                return _record(msg)
            return None
        finally:
            self.consumer.unassign()

    def holds(self, physical: str, from_ms: int, until_ms: int) -> bool:
        """Whether any partition holds a record with ``from_ms <= timestamp < until_ms``."""
        for p in self.partitions(physical):
            found = self.offset_for_time(physical, p, from_ms)
            if found < 0:
                continue
            record = self.first(physical, p, found)
            if record is not None and record.timestamp_ms < until_ms:
                return True
        return False

    def _transient(self, call: Callable[[], T], what: str) -> T:
        """``call``, retried (kafkaio.retry) while it fails with the transient errors of a new or moving
        partition, for up to ``timeout_s``; any other Kafka error is a RetryableError at once."""

        def attempt() -> T:
            try:
                return call()
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() or error.code() in _TRANSIENT:
                    raise _Passing(f"{what}: {exc}") from exc
                raise RetryableError(f"{what}: {exc}") from exc

        return retry(attempt, what=what, deadline_s=self.timeout_s, backoff=Backoff(0.1, 0.4), retry_on=(_Passing,))


class _Passing(RetryableError):
    """A transient error of a new or moving partition (retried here)."""


def _record(msg: Any) -> Record:
    return Record(
        msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), tuple(msg.headers() or ()), msg.timestamp()[1]
    )


def read_topic(
    kafka: KafkaSettings,
    serde: AvroSerde,
    topic: str,
    *,
    from_ms: int | None = None,
    tail: int | None = None,
    timeout_s: float = 30.0,
) -> Iterator[dict[str, Any]]:
    """Decoded records of catalog topic ``topic`` up to the current end of every partition.

    ``from_ms``: start each partition at the first message whose timestamp (venue event time) is
    >= from_ms. ``tail``: start at most ``tail`` messages before the end. Neither: from the beginning.
    """
    physical = kafka.topic(topic)
    with RangeReader(kafka, f"scalp-reader-{physical}", timeout_s) as reader:
        for record in reader.read(physical, reader.bounds(physical, from_ms=from_ms, tail=tail)):
            if record.value is not None:
                yield serde.decode(record.value, topic)


def holds_between(kafka: KafkaSettings, topic: str, from_ns: int, until_ns: int) -> bool:
    """Whether catalog topic ``topic`` holds a record with ``from_ns <= timestamp < until_ns`` (venue time)."""
    with RangeReader(kafka, "scalp-probe") as reader:
        return reader.holds(kafka.topic(topic), from_ns // 1_000_000, -(-until_ns // 1_000_000))
