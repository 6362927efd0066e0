"""An idempotent Avro producer: acks=all, retries inside librdkafka, delivery errors surfaced."""

from __future__ import annotations

import functools
import logging
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from .errors import FatalError
from .serde import AvroSerde
from .settings import KafkaSettings

log = logging.getLogger(__name__)


class AvroProducer:
    """Produces catalog records; ``flush()`` raises if any delivery failed (nothing is lost silently)."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde, extra: dict[str, Any] | None = None) -> None:
        self.kafka = kafka
        self.serde = serde
        config: dict[str, Any] = {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": kafka.linger_ms,
            "delivery.timeout.ms": kafka.delivery_timeout_ms,
            "compression.type": "lz4",
        }
        config.update(extra or {})
        self._producer = Producer(config)
        self._failures: list[str] = []
        self._positions: dict[int, tuple[str, int, int]] = {}
        self._seq = 0
        self.track = False  # remember where each record landed (tests, round-trip checks)

    @property
    def delivered(self) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) of each delivered record, in produce order (when tracking)."""
        return [self._positions[seq] for seq in sorted(self._positions)]

    def _on_delivery(self, seq: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
            log.error("delivery failed for %s: %s", msg.topic(), err.str())
        elif self.track:
            self._positions[seq] = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))

    def produce(self, topic: str, record: dict[str, Any]) -> None:
        """Encode ``record`` for catalog topic ``topic`` and queue it (keyed per the catalog)."""
        value = self.serde.encode(topic, record)
        key = self.serde.key(topic, record)
        self._seq += 1
        callback = functools.partial(self._on_delivery, self._seq)
        while True:
            try:
                self._producer.produce(self.kafka.topic(topic), value=value, key=key, on_delivery=callback)
                break
            except BufferError:  # local queue full: serve callbacks, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise FatalError(f"{remaining} messages not delivered within {timeout_s:.0f}s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise FatalError(f"{len(failures)} deliveries failed; first: {failures[0]}")
