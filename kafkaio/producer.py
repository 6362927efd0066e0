"""An idempotent Avro producer: acks=all, retries inside librdkafka, delivery errors surfaced.

Message timestamps are the record's venue event time (``ts`` in ns -> ms), so consumers can seek by
time. Keys are partitioned with murmur2 (the Java client's and Faust's partitioner) so every client
agrees on which partition a symbol lives in.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message

from schemas.serde import AvroSerde

from . import clients, deadletter
from .errors import FatalError
from .settings import KafkaSettings

log = logging.getLogger(__name__)

AckHook = Callable[[int, KafkaError | None, Message], None]
_POLL_EVERY = 256


class AvroProducer:
    """Produces catalog records; ``flush()`` and ``check()`` raise if any delivery failed."""

    def __init__(
        self,
        kafka: KafkaSettings,
        serde: AvroSerde,
        extra: dict[str, Any] | None = None,
        *,
        track: bool = False,
        report_successes: bool = False,
    ) -> None:
        """``track``: remember where each record landed. ``report_successes``: run ``on_ack`` for every
        delivery (costs a Python callback per message); otherwise only failures call back."""
        self.kafka = kafka
        self.serde = serde
        self._producer = clients.producer(
            kafka,
            {
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
                "queue.buffering.max.messages": 1_000_000,
                "delivery.report.only.error": not (track or report_successes),
                "on_delivery": self._on_failure,  # the default; per-message callbacks replace it when tracking
                **(extra or {}),
            },
        )
        self._failures: list[str] = []
        self._physical: dict[str, str] = {}  # catalog topic -> physical topic name
        self._positions: dict[int, tuple[str, int, int]] = {}
        self._seq = 0
        self.track = track
        self._per_message = track or report_successes
        self.on_ack: AckHook | None = None  # called with (seq, error, message) for every delivery
        self.acked = 0

    @property
    def delivered(self) -> list[tuple[str, int, int]]:
        """(topic, partition, offset) of each delivered record, in produce order (when tracking)."""
        return [self._positions[seq] for seq in sorted(self._positions)]

    def _on_failure(self, err: KafkaError | None, msg: Message) -> None:
        """Delivery callback when only failures are reported (no per-message state needed)."""
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
            log.error("delivery failed for %s: %s", msg.topic(), err.str())

    def _on_delivery(self, seq: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
            log.error("delivery failed for %s: %s", msg.topic(), err.str())
        else:
            self.acked += 1
            if self.track:
                self._positions[seq] = (str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))
        if self.on_ack is not None:
            self.on_ack(seq, err, msg)

    def physical(self, topic: str) -> str:
        """The physical (prefixed) name of catalog topic ``topic``."""
        physical = self._physical.get(topic)
        if physical is None:
            physical = self._physical[topic] = self.kafka.topic(topic)
        return physical

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        timestamp_ms: int,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> int:
        """Queue an encoded value for physical topic ``topic``; returns its sequence number."""
        seq = self._seq = self._seq + 1
        while True:
            try:
                if self._per_message:
                    self._producer.produce(
                        topic,
                        value,
                        key,
                        timestamp=timestamp_ms,
                        headers=headers,
                        on_delivery=functools.partial(self._on_delivery, seq),
                    )
                else:  # failures reach _on_failure, the producer's default callback
                    self._producer.produce(topic, value, key, timestamp=timestamp_ms, headers=headers)
                break
            except BufferError:  # local queue full: serve callbacks, then retry
                self._producer.poll(0.1)
        if seq % _POLL_EVERY == 0:
            self._producer.poll(0)
        return seq

    def raw_produce(self) -> Callable[..., None] | None:
        """For a loop that sends many values: confluent's own ``produce``, called as
        ``produce(physical_topic, value, key, timestamp=ms)``, which saves send()'s bookkeeping (a fifth of
        a microsecond per value); None when per-message delivery reports are on (use send()). It raises
        BufferError when the local queue is full: send() that value, which waits for room. The caller
        polls (``poll``) now and then, as send() does every few hundred values."""
        return None if self._per_message else self._producer.produce

    def produce(self, topic: str, record: dict[str, Any]) -> int:
        """Encode ``record`` for catalog topic ``topic`` and queue it; returns its sequence number."""
        return self.produce_encoded(topic, record, self.serde.encode(topic, record))  # checks ts is a long, too

    def produce_encoded(self, topic: str, record: dict[str, Any], value: bytes) -> int:
        """produce() for a record encoded already (``value`` = serde.encode(topic, record))."""
        return self.send(self.physical(topic), value, self.serde.key(topic, record), record["ts"] // 1_000_000)

    def produce_dlq(
        self,
        topic: str,
        raw: bytes,
        reason: str,
        key: bytes | None = None,
        timestamp_ms: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
        source: tuple[int, int] | None = None,
    ) -> int:
        """Send ``raw`` (the original bytes) to ``<topic>.dlq`` with the reason in the headers; ``source``:
        the (partition, offset) it was read from."""
        partition, offset = source if source is not None else (None, None)
        raw, cut = deadletter.fit(raw, self.kafka.dead_letter_max_bytes)
        all_headers = deadletter.headers(reason, self.kafka.topic(topic), partition, offset, extra=[*headers, *cut])
        dlq = self.kafka.topic(self.serde.catalog[topic].dlq)
        log.warning("dead letter to %s: %s", dlq, reason)
        return self.send(dlq, raw, key or b"", timestamp_ms, all_headers)

    def poll(self, timeout_s: float = 0) -> None:
        self._producer.poll(timeout_s)

    @contextlib.contextmanager
    def serving_deliveries(self) -> Iterator[None]:
        """Serve delivery reports on a thread of their own while the block runs, so an acknowledgement (or a
        failure) is handled when the broker answers, not when the caller next polls (a caller that waits for
        input between polls saw its acks up to one input interval late). librdkafka's poll is thread-safe
        and the thread waits inside it, without the interpreter lock."""
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                self._producer.poll(0.05)

        thread = threading.Thread(target=serve, name="delivery-reports", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def check(self) -> None:
        """Raise if a delivery failed since the last check (after librdkafka's own retries)."""
        if self._failures:
            failures, self._failures = self._failures, []
            raise FatalError(f"{len(failures)} deliveries failed; first: {failures[0]}")

    def close(self) -> None:
        """Drop the client now, discarding what it still holds (``flush`` first to keep it). Its delivery
        callback is a method of this object, a cycle the garbage collector does not break: an unreferenced
        producer keeps its threads and reconnects until the process exits."""
        self._producer.purge()
        del self._producer

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise FatalError(f"{remaining} messages not delivered within {timeout_s:.0f}s")
        self.check()
