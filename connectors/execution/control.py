"""The control topic (``execution_control``): the routers' kill switch and trading state.

``scalp halt|resume|reduce|flatten`` publish a record (:func:`publish`); every router reads the topic from
its start when it launches (so its state survives restarts) and then follows it (:class:`ControlFeed`).
A record whose command is unknown is dead-lettered once (the dead-letter topic is read at start, so a
restarted router does not send it again) and changes nothing. A router that halts itself (a delivery
failure, a reconciliation mismatch) publishes that too, so the halt outlives the process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from execution.guard import ALL_ACCOUNTS, COMMANDS, StateChange, UnknownCommand, for_account
from execution.router import Router
from kafkaio.deadletter import header, reason_of
from kafkaio.errors import FatalError
from kafkaio.producer import AvroProducer
from kafkaio.reader import RangeReader, read_topic
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import EXECUTION_CONTROL

from .common import CaughtUp, assign_all, consumer

log = logging.getLogger("scalp.execution")
PAPER_ACCOUNT = "PAPER"  # the paper broker's account id (account_snapshot, control records, the lease)


def command_record(account: str, command: str, reason: str | None, issued_by: str, ts: int) -> dict[str, Any]:
    return {
        "id": f"ctl-{uuid.uuid4().hex}",
        "ts": ts,
        "account_id": account,
        "command": command,
        "reason": reason,
        "issued_by": issued_by,
    }


def publish(
    kafka: KafkaSettings, serde: AvroSerde, account: str, command: str, reason: str | None, issued_by: str
) -> dict[str, Any]:
    """Publish a command (flushed: it is on the topic when this returns). ``ts`` is the issuer's clock: an
    operator's command has no venue time."""
    if command not in COMMANDS:
        raise UnknownCommand(f"unknown control command {command!r}")
    record = command_record(account or ALL_ACCOUNTS, command, reason, issued_by, time.time_ns())
    producer = AvroProducer(kafka, serde)
    producer.produce(EXECUTION_CONTROL, record)
    producer.flush(30)
    return record


def own_changes(producer: AvroProducer, account: str) -> Callable[[StateChange], None]:
    """Publishes a state change the router made itself, so it outlives the process."""

    def publish_change(change: StateChange) -> None:
        ts = change.ts or time.time_ns()
        record = command_record(account, change.command or "halt", change.reason, f"router {account}", ts)
        producer.produce(EXECUTION_CONTROL, record)

    return publish_change


def watch_deliveries(producer: AvroProducer, router: Router, now: int | None) -> None:
    """Serve delivery reports; a failed delivery of an ``orders`` or ``fills`` record halts entries at once
    (trading on without its records would make a restart send or miss orders)."""
    producer.poll(0)
    try:
        producer.check()
    except FatalError as exc:
        router.halt(f"a record was not delivered to Kafka ({exc})", now)


def current_state(kafka: KafkaSettings, serde: AvroSerde, account: str) -> tuple[StateChange, int]:
    """The trading state the control topic gives ``account`` (and how many records addressed it)."""
    from execution.guard import Guard
    from execution.settings import LimitSettings

    guard = Guard(LimitSettings())
    n = 0
    for record in read_topic(kafka, serde, EXECUTION_CONTROL):
        if not for_account(record, account):
            continue
        try:
            guard.apply(record)
            n += 1
        except UnknownCommand:
            continue
    return guard.change, n


class ControlFeed:
    """The control topic for one router: read from its start, then followed."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde, producer: AvroProducer, account: str) -> None:
        self.kafka, self.serde, self.producer, self.account = kafka, serde, producer, account
        physical = kafka.topic(EXECUTION_CONTROL)
        self.dead = self._dead_lettered(physical)
        self.consumer = consumer(kafka, f"control-{account}")
        self.caught_up = CaughtUp(assign_all(self.consumer, physical))
        self.dead_letters = 0

    def _dead_lettered(self, physical: str) -> set[tuple[int, int]]:
        """(partition, offset) of control records already dead-lettered (by any router)."""
        dlq = self.kafka.topic(self.serde.catalog[EXECUTION_CONTROL].dlq)
        seen: set[tuple[int, int]] = set()
        with RangeReader(self.kafka, f"scalp-control-dlq-{dlq}") as reader:
            for record in reader.read(dlq, reader.bounds(dlq)):
                partition, offset = header(record.headers, "source_partition"), header(record.headers, "source_offset")
                if header(record.headers, "source_topic") == physical and partition and offset:
                    seen.add((int(partition), int(offset)))
        return seen

    def poll(self, router: Router, now: Callable[[], int], *, enforce: bool, timeout_s: float = 0.0) -> int:
        """Apply what arrived (records for this account, in order); returns how many were read."""
        msgs = self.caught_up.observe(self.consumer.consume(100, timeout=timeout_s))
        n = 0
        for msg in msgs:
            if msg.error() is not None or msg.value() is None:
                continue
            n += 1
            source = (msg.partition() or 0, msg.offset() or 0)
            try:
                record = self.serde.decode(msg.value(), EXECUTION_CONTROL)
                if not for_account(record, self.account):
                    continue
                router.on_control(record, now(), enforce=enforce)
            except Exception as exc:  # undecodable or an unknown command: dead-lettered, the state unchanged
                log.warning("control record %s:%s not applied: %s", *source, exc)
                if source not in self.dead:
                    self.dead.add(source)
                    self.dead_letters += 1
                    self.producer.produce_dlq(
                        EXECUTION_CONTROL, msg.value(), reason_of(exc), msg.key(), msg.timestamp()[1], source=source
                    )
        return n

    def catch_up(self, router: Router, now: Callable[[], int], timeout_s: float = 30.0) -> None:
        """Read the topic to its end, rebuilding the state (nothing enforced yet: the trades are not resumed)."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the control topic was not read to its end within {timeout_s:.0f} s")
            self.poll(router, now, enforce=False, timeout_s=0.2)

    def close(self) -> None:
        self.consumer.close()
