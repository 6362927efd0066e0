"""Everything the worker produces: output records (features, signals, risk decisions, order intents,
risk_day), risk inputs on the internal single-partition topic, and dead letters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from kafkaio import deadletter
from schemas.serde import AvroSerde

from .core.pipeline import RISK_INPUT, Output
from .state import ACCOUNT_KEY
from .stats import Stats

log = logging.getLogger(__name__)


class Outputs:
    def __init__(self, serde: AvroSerde, stats: Stats, names: dict[str, str]) -> None:
        """``names``: catalog topic -> physical name of each output topic."""
        self.serde = serde
        self.stats = stats
        self.names = names
        self.app: Any = None  # the Faust app, and its topics below (set when it is built)
        self.risk_topic: Any = None
        self.dlq: dict[str, Any] = {}  # catalog topic -> its dead-letter topic
        self.on_output: Callable[[str, dict[str, Any]], None] | None = None  # the metrics, when served
        self.risk_sent = 0  # records sent to the risk input (progress markers included)

    async def send(self, out: list[Output]) -> None:
        counts = self.stats.outputs
        producer = self.app.producer
        on_output = self.on_output
        for topic, record in out:
            if on_output is not None:
                on_output(topic, record)
            if topic == RISK_INPUT:
                await self.send_risk(record)
            else:
                # straight to Faust's producer (what Topic.send ends in, less a future, a channel and a lookup
                # per record): the same client, so Faust's flush before each commit covers these too
                # the message timestamp is the record's event time (ms), as on every catalog topic, so readers
                # seek by it (offsets_for_times) and retention counts from it; Faust takes seconds and
                # truncates ``s * 1000``, hence the half millisecond
                name = self.names[topic]
                when = (record["ts"] // 1_000_000 + 0.5) / 1000
                await producer.send(
                    name, self.serde.key(topic, record), self.serde.encode(topic, record), None, when, None
                )
            counts[topic] = counts.get(topic, 0) + 1

    async def send_risk(self, body: dict[str, Any]) -> None:
        """A risk input, in order with every other (one partition)."""
        self.risk_sent += 1
        await self.risk_topic.send(key=ACCOUNT_KEY, value=orjson.dumps(body))

    async def dead_letter(
        self, topic: str, source: tuple[str, int, int], key: bytes | None, value: bytes | None, exc: Exception
    ) -> None:
        reason = deadletter.reason_of(exc)
        name, partition, offset = source
        log.error("%s[%d]@%d: %s (to the dead-letter queue)", name, partition, offset, reason)
        self.stats.dead_letters += 1
        body, cut = deadletter.fit(value or b"", self.serde.kafka.dead_letter_max_bytes)
        headers = deadletter.headers(reason, name, partition, offset, extra=cut)
        await self.dlq[topic].send(key=key, value=body, headers=headers)
