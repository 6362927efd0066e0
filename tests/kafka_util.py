"""Reading back what a test produced, by exact partition and offset."""

from __future__ import annotations

from collections import defaultdict

from confluent_kafka import Consumer, Message, TopicPartition

from kafkaio.settings import KafkaSettings


def read_exact(kafka: KafkaSettings, delivered: list[tuple[str, int, int]], timeout_s: float = 30.0) -> list[Message]:
    """The messages at the given (topic, partition, offset) positions, in the same order."""
    wanted: dict[tuple[str, int], set[int]] = defaultdict(set)
    for topic, partition, offset in delivered:
        wanted[(topic, partition)].add(offset)
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": "scalp-tests-readback",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    found: dict[tuple[str, int, int], Message] = {}
    try:
        consumer.assign([TopicPartition(t, p, min(offs)) for (t, p), offs in wanted.items()])
        import time

        deadline = time.monotonic() + timeout_s
        while len(found) < len(delivered) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            key = (msg.topic(), msg.partition(), msg.offset())
            if msg.offset() in wanted[(msg.topic(), msg.partition())]:
                found[key] = msg
    finally:
        consumer.close()
    missing = [d for d in delivered if d not in found]
    assert not missing, f"not read back: {missing[:5]}"
    return [found[d] for d in delivered]
