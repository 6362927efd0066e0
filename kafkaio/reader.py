"""Reading catalog topics back: by event time (offsets_for_times) or the tail of each partition."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.serde import AvroSerde

from .errors import RetryableError
from .settings import KafkaSettings


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
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"scalp-reader-{physical}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 3,
        }
    )
    try:
        try:
            meta = consumer.list_topics(physical, timeout=timeout_s)
        except KafkaException as exc:
            raise RetryableError(f"Kafka at {kafka.bootstrap_servers} unreachable: {exc}") from exc
        partitions = sorted(meta.topics[physical].partitions) if physical in meta.topics else []
        starts: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for p in partitions:
            low, high = _watermarks(consumer, TopicPartition(physical, p), timeout_s)
            start = low
            if tail is not None:
                start = max(low, high - tail)
            if from_ms is not None:
                found = consumer.offsets_for_times([TopicPartition(physical, p, from_ms)], timeout=timeout_s)[0]
                start = high if found.offset < 0 else max(start, found.offset)
            if start < high:
                starts.append(TopicPartition(physical, p, start))
                ends[p] = high
        if not starts:
            return
        consumer.assign(starts)
        for _, _, value in drain(consumer, physical, ends):
            if value is not None:
                yield serde.decode(value, topic)
    finally:
        consumer.close()


def drain(
    consumer: Consumer, physical: str, ends: dict[int, int], batch: int = 1000
) -> Iterator[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of the assigned partitions of ``physical`` until each reaches its end
    offset in ``ends`` (exclusive; taken before reading, so records produced meanwhile are not waited for)."""
    remaining = set(ends)
    while remaining:
        for msg in consumer.consume(batch, timeout=1.0):
            err = msg.error()
            p = msg.partition() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(p)
                    continue
                raise RetryableError(f"reading {physical}: {err}")
            offset = msg.offset() or 0
            if p not in remaining or offset >= ends[p]:
                remaining.discard(p)
                continue
            if offset >= ends[p] - 1:
                remaining.discard(p)
            yield p, offset, msg.value()


_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TRANSPORT,
}


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """Watermark offsets, retrying the transient errors of a freshly created or moving partition."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in _TRANSIENT
            if not transient or time.monotonic() > deadline:
                raise RetryableError(f"offsets of {partition.topic}[{partition.partition}]: {exc}") from exc
            time.sleep(0.2)
