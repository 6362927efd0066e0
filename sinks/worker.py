"""`scalp sink`: a consumer-group worker writing every topic into its table exactly once.

Offsets live in PostgreSQL (``sink_offsets``), written in the same transaction as the rows; on assignment
the worker seeks to them, so a crash at any point (SIGKILL included) resumes exactly where the database
says. Kafka offset commits are informational only and auto-commit is off. Batches flush on size or age.
While PostgreSQL is unreachable the worker pauses its partitions, keeps the batch and retries with
backoff; it never holds more than ``max_buffered_records``. SIGTERM flushes the batch and leaves the group.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from kafkaio import clients, deadletter
from kafkaio.errors import RetryableError, SerializationError
from kafkaio.retry import Backoff, retry
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde

from .columnar import ColumnarCodec, ColumnarError
from .metrics import SinkMetrics
from .rows import TableSpec
from .settings import DatabaseSettings, SinkSettings
from .writer import Batch, FencedError, Pending, PgWriter

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class WorkerState:
    assigned: list[tuple[str, int]] = field(default_factory=list)
    paused: bool = False
    last_flush: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    buffered: int = 0
    rows_written: int = 0
    fast_rows: int = 0  # of rows_written, those through the columnar fast path
    fallbacks: int = 0  # batches the fast path refused (written row by row instead)
    first_message: float | None = None  # monotonic time of the first message taken
    last_commit: float | None = None  # monotonic time of the last successful batch commit


def _source(pending: Pending) -> tuple[str, int]:
    """(physical topic, partition) a pending row was read from."""
    return pending.meta.topic(), pending.meta.partition()


class SinkWorker:
    def __init__(
        self,
        kafka: KafkaSettings,
        db: DatabaseSettings,
        settings: SinkSettings,
        serde: AvroSerde,
        catalog: Catalog,
        topics: list[str],
        metrics: SinkMetrics | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.serde = serde
        self.catalog = catalog
        self.topics = topics
        self.physical = {kafka.topic(t): t for t in topics}
        self.writer = PgWriter(db, settings.group_id, catalog)
        self.metrics = metrics or SinkMetrics()
        for topic in topics:  # every table's series exists from the start (at 0), so a rate over it works
            self.metrics.dlq.labels(topic)
            self.metrics.rows.labels(topic)
        self.state = WorkerState()
        self.batch = Batch()
        self.batch_started = time.monotonic()
        self._stop = threading.Event()
        self._idle_reset = False  # set on assignment: idleness counts from when there is work to wait for
        self._dlq = clients.producer(kafka, {"linger.ms": 5})
        self._dlq_failures: list[str] = []
        self._fast: dict[tuple[bytes, str], bool] = {}  # (5-byte header, topic) -> fast path?
        self.consumer = clients.consumer(
            kafka,
            settings.group_id,
            earliest=True,
            extra={
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "range",
                "max.poll.interval.ms": 600_000,
                "fetch.max.bytes": 52_428_800,
                "max.partition.fetch.bytes": 16_777_216,
                "queued.min.messages": 200_000,
                "session.timeout.ms": settings.session_timeout_ms,
                **({"group.instance.id": settings.instance_id} if settings.instance_id else {}),
            },
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self, idle_exit_s: float | None = None) -> None:
        """Consume until stop() (or, with ``idle_exit_s``, until caught up and idle that long)."""
        self._wait_for_database()
        self.consumer.subscribe(
            list(self.physical), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        idle_since = time.monotonic()
        next_lag = time.monotonic() + 1
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_lag:
                    next_lag = time.monotonic() + 5
                    self._update_lag()
                room = self.settings.max_buffered_records - self.batch.size
                messages = (
                    self.consumer.consume(num_messages=max(1, min(10_000, room)), timeout=0.2) if room > 0 else []
                )
                for msg in messages:
                    self._take(msg)
                if messages or self._idle_reset:
                    idle_since = time.monotonic()
                    self._idle_reset = False
                due = time.monotonic() - self.batch_started >= self.settings.batch_max_ms / 1000
                if self.batch.size >= self.settings.batch_max_rows or (due and self.batch.offsets) or room <= 0:
                    self.flush()
                elif (
                    not messages
                    and idle_exit_s is not None
                    and self.state.assigned  # not while still waiting for the group to assign partitions
                    and not self.batch.offsets
                    and time.monotonic() - idle_since >= idle_exit_s
                ):
                    break
                self.state.buffered = self.batch.size
        finally:
            self.flush()
            self.consumer.close()  # leaves the group (revoke runs and flushes nothing new)
            self._dlq.flush(30)
            self.writer.close()
            log.info("sink stopped: %d rows written", self.state.rows_written)

    def _retry(
        self, func: Callable[[], T], what: str, *, retry_on: tuple[type[BaseException], ...] = (RetryableError,),
        on_retry: Callable[[], None] | None = None, stoppable: bool = True,
    ) -> T:  # fmt: skip
        """``func`` until it succeeds, on the sink's backoff; with ``stoppable``, a stop ends the wait and
        re-raises the last error."""

        def log_retry(attempt: int, delay: float, exc: BaseException) -> None:
            self.state.last_error = str(exc)
            if on_retry is not None:
                on_retry()
            log.warning("%s: %s; retrying in %.1fs (attempt %d)", what, exc, delay, attempt)

        return retry(
            func,
            what=what,
            deadline_s=None,
            backoff=Backoff(self.settings.retry_base_s, self.settings.retry_cap_s),
            retry_on=retry_on,
            sleep=self._stop.wait if stoppable else time.sleep,
            on_retry=log_retry,
            stopped=self._stop.is_set if stoppable else None,
        )

    def _wait_for_database(self) -> None:
        with contextlib.suppress(RetryableError):  # raised only when stopped while waiting
            self._retry(self.writer.connect, "connecting to the database")

    # --- messages --------------------------------------------------------------------------------

    def _take(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        if self.state.first_message is None:
            self.state.first_message = time.monotonic()
        physical: str = msg.topic()  # type: ignore[assignment]
        topic = self.physical[physical]
        value = msg.value()
        self.batch.offsets[(physical, msg.partition())] = msg.offset() + 1  # type: ignore[index,operator]
        fast = self._fast.get((value[:5], topic)) if value is not None else False
        if fast:
            self.batch.add_raw(topic, msg)  # decoded with the whole batch at write time
            return
        added = self._add_record(msg, topic, value)
        if fast is None and added and value is not None and self._fast_codec(topic):
            # the first value of this schema id decoded fine: the next ones take the fast path when the
            # id is the topic's own schema (no resolution between versions needed)
            self._fast[(value[:5], topic)] = self.serde.resolves_to_itself(value[:5], topic)

    def _add_record(self, msg: Message, topic: str, value: bytes | None) -> bool:
        """Decode ``value`` into a row of the batch (True), or send the message to the DLQ (False)."""
        try:
            if value is None:
                raise SerializationError(topic, None, "empty value (tombstone)")
            record = self._decode(value, topic)
            spec = self.writer.specs.get(topic) or self._spec(topic)
            # the message itself is kept (not copied into a smaller object): the DLQ needs it only rarely
            self.batch.add(Pending(topic, spec.row(record), record.get("ts") or 0, msg))
            return True
        except SerializationError as exc:
            self._dead_letter(msg, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self._dead_letter(msg, f"{topic}: record does not fit table {topic}: {type(exc).__name__}: {exc}")
        return False

    def _fast_codec(self, topic: str) -> bool:
        """Whether ``topic`` has a fast path codec (built once from its table and catalog schema)."""
        if not self.settings.columnar:
            return False
        if topic not in self.writer.codecs:
            spec = self.writer.specs.get(topic) or self._spec(topic)
            self.writer.codecs[topic] = ColumnarCodec.build(spec, self.catalog[topic].schema)
        return self.writer.codecs[topic] is not None

    def _materialize(self) -> None:
        """Move the batch's fast path messages to the row-by-row path (decoded one by one, bad ones to
        the DLQ), after the fast path refused the batch."""
        raw, self.batch.raw = self.batch.raw, {}
        for topic, messages in raw.items():
            self.batch.size -= len(messages)
            for msg in messages:
                self._add_record(msg, topic, msg.value())

    def _decode(self, value: bytes, topic: str) -> dict[str, Any]:
        """Decode; while the registry is unreachable (a schema id not seen yet), wait and retry."""
        try:
            return self.serde.decode(value, topic)
        except RetryableError:
            pass
        return self._retry(lambda: self.serde.decode(value, topic), f"decoding {topic}", stoppable=False)

    def _spec(self, topic: str) -> TableSpec:
        spec = self.writer.specs.get(topic)
        if spec is not None:
            return spec
        return self._retry(
            lambda: self.writer.spec(topic),
            f"reading the columns of {topic}",
            retry_on=(RetryableError, psycopg.OperationalError),
            on_retry=self.writer.close,
            stoppable=False,
        )

    def _dead_letter(self, msg: Message, reason: str) -> None:
        """Send the original bytes and headers to <topic>.dlq (flushed before the batch commits)."""
        physical, partition, offset = str(msg.topic()), msg.partition(), msg.offset()
        topic = self.physical[physical]
        value, cut = deadletter.fit(msg.value() or b"", self.kafka.dead_letter_max_bytes)
        headers = deadletter.headers(reason, physical, partition, offset, original=msg.headers() or (), extra=cut)
        log.warning("%s[%d]@%d to the dead-letter queue: %s", physical, partition, offset, reason)

        def failed(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._dlq_failures.append(err.str())

        self._dlq.produce(
            self.kafka.topic(self.catalog[topic].dlq),
            value=value,
            key=msg.key(),
            headers=headers,
            on_delivery=failed,
        )
        self.metrics.dlq.labels(topic).inc()

    def _reject(self, pending: Pending, reason: str) -> None:
        self._dead_letter(pending.meta, reason)

    # --- flushing --------------------------------------------------------------------------------

    def flush(self, max_attempts: int | None = None) -> None:
        """Write the batch and its offsets; on database trouble pause, back off and retry until it lands
        (or ``max_attempts`` failed: then RetryableError, and the batch is still held)."""
        if not self.batch.offsets:
            self.batch_started = time.monotonic()
            return
        backoff = Backoff(self.settings.retry_base_s, self.settings.retry_cap_s)
        while True:
            started = time.monotonic()
            try:
                self._flush_dlq()
                result = self.writer.write(self.batch, self._reject)
                self._flush_dlq()  # rows rejected during the write are in the DLQ before... the commit below
            except ColumnarError as exc:
                log.info("fast path refused the batch (%s): writing it row by row", exc)
                self.state.fallbacks += 1
                self.metrics.fallbacks.inc()
                self._materialize()
                continue
            except FencedError as exc:
                log.warning("%s: dropping their batch and re-reading the stored offsets", exc)
                self._refetch(exc.partitions)
                break
            except RetryableError as exc:
                self.state.last_error = str(exc)
                if max_attempts is not None and backoff.attempt + 1 >= max_attempts:
                    raise
                if not self.state.paused:
                    self._pause(True)
                delay = backoff.next_delay()
                log.warning("%s; partitions paused, retry %d in %.1fs", exc, backoff.attempt, delay)
                self._sleep_polling(delay)
                if self._stop.is_set() and backoff.attempt > 3:
                    log.error(
                        "stopping with %d unwritten rows: they stay in Kafka (offsets were not advanced)",
                        self.batch.size,
                    )
                    break
                continue
            self.metrics.batch_seconds.observe(time.monotonic() - started)
            for table, count in result.written.items():
                self.metrics.rows.labels(table).inc(count)
                self.state.rows_written += count
            if result.duplicates:
                self.metrics.duplicates.inc(result.duplicates)
            self.state.fast_rows += result.fast
            self.metrics.fast_rows.inc(result.fast)
            self.metrics.last_write.set_to_current_time()
            self._commit_informational()
            self.state.last_error = None
            self.state.last_flush = self.state.last_commit = time.monotonic()
            break
        if self.state.paused:
            self._pause(False)
        self.batch = Batch()
        self.batch_started = time.monotonic()

    def _flush_dlq(self) -> None:
        remaining = self._dlq.flush(30)
        if remaining or self._dlq_failures:
            failures, self._dlq_failures = self._dlq_failures, []
            raise RetryableError(f"dead-letter queue not acknowledged ({remaining} pending; {failures[:1]})")

    def _commit_informational(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.batch.offsets.items()]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except Exception as exc:  # informational only: the database holds the truth
                log.debug("kafka commit failed (informational): %s", exc)

    def _pause(self, pause: bool) -> None:
        partitions = [TopicPartition(t, p) for t, p in self.state.assigned]
        if partitions:
            (self.consumer.pause if pause else self.consumer.resume)(partitions)
        self.state.paused = pause

    def _sleep_polling(self, seconds: float) -> None:
        """Wait while serving the consumer (partitions are paused: nothing new is fetched)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(num_messages=100, timeout=0.1):
                self._take(msg)  # only messages already in flight before the pause
            if self._stop.is_set():
                return

    def _refetch(self, partitions: list[tuple[str, int]]) -> None:
        keys = set(partitions)
        self.batch.drop_partitions(keys, _source)
        stored = self._stored_with_retry(partitions)
        for topic, partition in partitions:
            offset = stored.get((topic, partition), 0)
            self.consumer.seek(TopicPartition(topic, partition, offset))

    # --- rebalancing -----------------------------------------------------------------------------

    def _stored_with_retry(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return self._retry(lambda: self.writer.stored_offsets(partitions), "reading stored offsets", stoppable=False)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        stored = self._stored_with_retry(keys)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), -2)  # -2: OFFSET_BEGINNING
        consumer.assign(partitions)
        self.state.assigned = keys
        self._idle_reset = True
        log.info("assigned %s", ", ".join(f"{t}[{p}]@{stored.get((t, p), 'start')}" for t, p in keys))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.flush(max_attempts=1)
        except RetryableError as exc:  # the new owner re-reads from the stored offsets: nothing is lost
            log.warning("flush on revoke failed (%s); the batch is dropped and will be re-read", exc)
            self.batch = Batch()
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.batch.drop_partitions(keys, _source)
        self.state.assigned = [k for k in self.state.assigned if k not in keys]
        consumer.unassign()
        log.info("revoked %d partitions", len(partitions))

    # --- lag -------------------------------------------------------------------------------------

    def _update_lag(self) -> None:
        try:
            self.metrics.set_lag((topic, partition, lag) for (topic, partition), lag in self.lag().items())
        except Exception as exc:  # monitoring must never stop the worker
            log.debug("lag update failed: %s", exc)

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet stored, per assigned partition, from the high watermarks the fetches carry
        (cached: never blocks the consume loop). Partitions not fetched yet are left out."""
        out = {}
        for topic, partition in self.state.assigned:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0:
                continue
            stored = self.writer.expected.get((topic, partition)) or 0
            out[(topic, partition)] = max(0, high - stored)
        return out
