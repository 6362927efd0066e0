"""What both live routers (paper and Tradier) share on Kafka: reading back what earlier runs published,
producing outputs once, reading inputs from the start of their topics, and the trading guard's wiring."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from execution.guard import Guard, et_date
from execution.router import Router
from execution.settings import ExecutionSettings
from kafkaio import clients
from kafkaio.deadletter import reason_of
from kafkaio.producer import AvroProducer
from kafkaio.reader import read_topic
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import ACCOUNT_SNAPSHOT, FILLS, ORDERS, TRADE_LEDGER
from sinks.audit import AuditWriter
from streams.core.sessions import Calendar

log = logging.getLogger("scalp.execution")
NS = 1_000_000_000
MS = 1_000_000
OUTPUTS = (ORDERS, FILLS, TRADE_LEDGER, ACCOUNT_SNAPSHOT)


def output_key(topic: str, record: dict[str, Any]) -> tuple[Any, ...]:
    if topic == ORDERS:
        return (record["id"], record["ts"])
    if topic == ACCOUNT_SNAPSHOT:
        return (record["account_id"], record["ts"])
    return (record["id"],)


@dataclass
class Published:
    """What earlier runs wrote, read back from the output topics."""

    keys: dict[str, set[tuple[Any, ...]]]
    orders: dict[str, dict[str, Any]]  # latest snapshot per order id
    fills: list[dict[str, Any]]
    ledger: set[str]

    @staticmethod
    def read(kafka: KafkaSettings, serde: AvroSerde) -> Published:
        keys: dict[str, set[tuple[Any, ...]]] = {t: set() for t in OUTPUTS}
        orders: dict[str, dict[str, Any]] = {}
        fills: list[dict[str, Any]] = []
        ledger: set[str] = set()
        for topic in OUTPUTS:
            for record in read_topic(kafka, serde, topic):
                keys[topic].add(output_key(topic, record))
                if topic == ORDERS:
                    old = orders.get(record["id"])
                    if old is None or record["ts"] >= old["ts"]:
                        orders[record["id"]] = record
                elif topic == FILLS:
                    fills.append(record)
                elif topic == TRADE_LEDGER:
                    ledger.add(record["id"])
        return Published(keys, orders, fills, ledger)


class Outputs:
    """Produces router records, skipping any an earlier run already published (same key)."""

    def __init__(self, producer: AvroProducer, published: Published) -> None:
        self.producer = producer
        self.published = published
        self.skipped = 0

    def __call__(self, topic: str, record: dict[str, Any]) -> None:
        key = output_key(topic, record)
        seen = self.published.keys[topic]
        if key in seen:
            self.skipped += 1
            return
        seen.add(key)
        self.producer.produce(topic, record)


def assign_all(consumer: Consumer, physical: str) -> list[TopicPartition]:
    meta = consumer.list_topics(physical, timeout=30)
    parts = [TopicPartition(physical, p, -2) for p in sorted(meta.topics[physical].partitions)]  # -2: beginning
    consumer.assign(parts)
    return parts


def consumer(kafka: KafkaSettings, name: str) -> Consumer:
    return clients.consumer(kafka, f"scalp-execute-{name}", eof=True, earliest=True, quiet=True)


class CaughtUp:
    """Whether a consumer has read every assigned partition to its end, from the partition-EOF events the
    consumer reports (no broker round trip: a watermark query waits behind the consumer's long-poll fetch,
    ~0.5 s each here)."""

    def __init__(self, parts: list[TopicPartition]) -> None:
        self.at_end = {tp.partition: False for tp in parts}

    def observe(self, msgs: list[Any]) -> list[Any]:
        for msg in msgs:
            err = msg.error()
            if err is None:
                self.at_end[msg.partition() or 0] = False
            elif err.code() == KafkaError._PARTITION_EOF:
                self.at_end[msg.partition() or 0] = True
        return msgs

    def __call__(self) -> bool:
        return all(self.at_end.values())


def decode_all(
    serde: AvroSerde, msgs: list[Any], topic: str, dead: Callable[[str, Any, Exception], None]
) -> Iterator[dict[str, Any]]:
    for msg in msgs:
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("%s: %s", topic, msg.error())
            continue
        value = msg.value()
        if value is None:
            continue
        try:
            yield serde.decode(value, topic)
        except Exception as exc:
            dead(topic, msg, exc)


@dataclass
class RunResult:
    router: Router
    outputs: Outputs
    audit: AuditWriter
    late_intents: int = 0
    dead_letters: int = 0


def dead_letters(producer: AvroProducer, result: RunResult) -> Callable[[str, Any, Exception], None]:
    def dead(topic: str, msg: Any, exc: Exception) -> None:
        result.dead_letters += 1
        source = (msg.partition(), msg.offset())
        producer.produce_dlq(topic, msg.value(), reason_of(exc), msg.key(), msg.timestamp()[1], source=source)

    return dead


def session_of(calendar: Calendar, ts: int) -> str:
    where = calendar.at(ts)
    return "closed" if where is None else where[1]


def operator() -> str:
    """Who issues a command or runs a router: user@host (for the records, never a secret)."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def make_guard(settings: ExecutionSettings, calendar: Calendar, before_send: Callable[[], None] | None) -> Guard:
    """The router's guard: limits from the settings, the end-of-day cutoff from the exchange calendar (the
    close, 13:00 ET on half days, less ``eod_flatten_minutes``)."""
    minutes = settings.limits.eod_flatten_minutes

    def eod_cutoff(now: int) -> int | None:
        if minutes <= 0:
            return None
        day = calendar.day(et_date(now))
        return None if day is None else day.close_ns - int(minutes * 60 * 1_000_000_000)

    return Guard(settings.limits, eod_cutoff, before_send)
