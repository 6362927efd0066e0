"""What the worker asks of Kafka directly, outside Faust's consumer: where a partition starts (the group's
committed offset or the log start) and the records of an offset range (to fill a hole Faust skipped).
Both block, so the worker calls them in an executor thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import TopicPartition

from kafkaio import clients
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings

log = logging.getLogger(__name__)
Raw = tuple[int, bytes | None, bytes]  # (offset, key, value)


class OffsetsClient:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.group = ""  # the Faust app's id (its consumer group), set when the app is built
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start_offset(self, topic: str, partition: int) -> int:
        """Where a newly assigned partition must start: the group's committed offset, or the log start when
        nothing was committed or the log starts later (retention). Asked of Kafka in an executor thread
        (Faust's own record of it is not always set when the first message arrives)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.committed_or_earliest, topic, partition)

    def committed_or_earliest(self, topic: str, partition: int) -> int:
        with self._lock:  # executor threads: a warm-up at the assignment, then the real lookups
            if self._client is None:
                self._client = clients.consumer(self.kafka, self.group)
            client = self._client
            committed = client.committed([TopicPartition(topic, partition)], timeout=30)[0].offset
            earliest, _ = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
        return int(max(committed, earliest, 0))

    async def high_water(self, topic: str, partition: int) -> int:
        """The partition's high water mark, asked of Kafka (executor thread)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._high_water, topic, partition)

    def _high_water(self, topic: str, partition: int) -> int:
        with self._lock:
            if self._client is None:
                self._client = clients.consumer(self.kafka, self.group)
            _, high = self._client.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
        return int(high)

    def warm(self, topic: str, partition: int) -> None:
        """Connect ahead of the first real lookup (it held up the first inputs ~60 ms)."""
        try:
            self.committed_or_earliest(topic, partition)
        except Exception as exc:  # the real lookup reports the problem
            log.debug("warming the offsets client failed: %s", exc)

    async def read_range(
        self, topic: str, partition: int, start: int, end: int
    ) -> list[tuple[int, bytes | None, bytes]]:
        """Records ``start`` <= offset < ``end`` of one partition, read with a consumer of its own (executor
        thread). Offsets that are not in the log (compaction, retention) are logged and left out."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._read_range, topic, partition, start, end)

    def _read_range(self, topic: str, partition: int, start: int, end: int) -> list[Raw]:
        with RangeReader(self.kafka, f"{self.group}-range", timeout_s=60) as reader:
            out = [(r.offset, r.key, r.value or b"") for r in reader.read(topic, {partition: (start, end)})]
        if len(out) != end - start:
            log.warning("%s[%d]: %d of the %d records %d..%d read", topic, partition, len(out), end - start, start,
                        end - 1)  # fmt: skip
        return out
