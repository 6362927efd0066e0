"""Topic administration from the catalog: create (idempotent) and list with end offsets."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from .catalog import Catalog
from .errors import RetryableError
from .settings import KafkaSettings


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    messages: int  # sum over partitions of (high watermark - low watermark)
    end_offsets: tuple[int, ...]


def _config(spec_retention: int, cleanup: str) -> dict[str, str]:
    return {"retention.ms": str(spec_retention), "cleanup.policy": cleanup}


class TopicAdmin:
    def __init__(self, kafka: KafkaSettings, catalog: Catalog) -> None:
        self.kafka = kafka
        self.catalog = catalog
        self.admin = AdminClient({**kafka.client_config()})

    def create_all(self, with_dlq: bool = True, timeout_s: float = 30.0) -> dict[str, bool]:
        """Create every catalog topic (and its DLQ); returns physical name -> created now."""
        wanted: list[NewTopic] = []
        for spec in self.catalog:
            wanted.append(
                NewTopic(
                    self.kafka.topic(spec.name),
                    spec.partitions,
                    1,
                    config=_config(spec.retention_ms, spec.cleanup_policy),
                )
            )
            if with_dlq:
                dlq = self.catalog.dlq
                wanted.append(
                    NewTopic(
                        self.kafka.topic(spec.dlq),
                        dlq.partitions,
                        1,
                        config=_config(dlq.retention_ms, dlq.cleanup_policy),
                    )
                )
        existing = self._existing(timeout_s)
        todo = [t for t in wanted if t.topic not in existing]
        result = {t.topic: False for t in wanted}
        if todo:
            futures = self.admin.create_topics(todo, operation_timeout=timeout_s, request_timeout=timeout_s)
            for name, future in futures.items():
                try:
                    future.result()
                    result[name] = True
                except KafkaException as exc:
                    if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                        raise RetryableError(f"creating topic {name} failed: {exc}") from exc
        return result

    def _existing(self, timeout_s: float) -> dict[str, int]:
        try:
            meta = self.admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise RetryableError(f"Kafka at {self.kafka.bootstrap_servers} unreachable: {exc}") from exc
        return {name: len(t.partitions) for name, t in meta.topics.items()}

    def list(self, timeout_s: float = 10.0) -> list[TopicInfo]:
        existing = self._existing(timeout_s)
        consumer = Consumer(
            {**self.kafka.client_config(), "group.id": "scalp-topics-list", "enable.auto.commit": False}
        )
        infos: list[TopicInfo] = []
        try:
            for name in sorted(existing):
                if name.startswith("__"):
                    continue
                ends: list[int] = []
                total = 0
                for p in range(existing[name]):
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
                    ends.append(high)
                    total += high - low
                infos.append(TopicInfo(name, existing[name], total, tuple(ends)))
        finally:
            consumer.close()
        return infos
